package nova

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds the nesting the fast path follows (encoding/json allows
// 10000; deeper bodies go to decodeStd).
const maxDepth = 512

// scan is a cursor over a JSON document. Its methods return false when the
// document is not one the fast path may answer for.
type scan struct {
	b []byte
	i int
	d *Decoder
}

func (s *scan) ws() { s.i = skipSpace(s.b, s.i) }

// peek returns the next non-space byte (0 at the end).
func (s *scan) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scan) lit(word string) bool {
	if !bytes.HasPrefix(s.b[s.i:], []byte(word)) {
		return false
	}
	s.i += len(word)
	return true
}

// null consumes a null if one is next.
func (s *scan) null() bool {
	if s.peek() == 'n' && s.lit("null") {
		return true
	}
	return false
}

// str consumes a string and returns its raw content (between the quotes)
// and whether it holds no escape and only valid UTF-8, so that the raw
// content is the value.
func (s *scan) str() (raw []byte, plain bool, ok bool) {
	if s.peek() != '"' {
		return nil, false, false
	}
	b := s.b
	start := s.i + 1
	j := start
	plain = true
	ascii := true
	for j < len(b) {
		// Eight bytes at a time to the first special one.
		for j+8 <= len(b) {
			if m := special8(binary.LittleEndian.Uint64(b[j:])); m != 0 {
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		if j >= len(b) {
			break
		}
		c := b[j]
		switch {
		case c >= 0x20 && c < 0x80 && c != '"' && c != '\\':
			j++ // the last bytes of the body, one at a time
		case c == '"':
			s.i = j + 1
			raw = b[start:j]
			if !ascii && !utf8.Valid(raw) {
				plain = false // encoding/json replaces invalid bytes
			}
			return raw, plain, true
		case c == '\\':
			plain = false
			if j+1 >= len(b) {
				return nil, false, false
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+6 > len(b) {
					return nil, false, false
				}
				for _, h := range b[j+2 : j+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return nil, false, false
					}
				}
				j += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		default: // c >= 0x80
			ascii = false
			j++
		}
	}
	return nil, false, false
}

// special8 marks the bytes of x (eight, little-endian) that end or escape a
// string or need a check: a quote, a backslash, a control character or a
// byte of a multi-byte UTF-8 sequence. The lowest marked byte (the high bit
// of its byte in the result) is the first such byte; marks above it may be
// false. Below the first special byte every byte is from 0x20 to 0x7f and
// neither a quote nor a backslash, so no subtraction borrows there and none
// sets a high bit: x-0x20 is at most 0x5f, and q-1 and b-1 at most 0x7e, as
// q and b are not zero there.
func special8(x uint64) uint64 {
	const (
		ones  = 0x0101010101010101
		highs = 0x8080808080808080
	)
	q := x ^ ('"' * ones)  // zero bytes where x has a quote
	b := x ^ ('\\' * ones) // zero bytes where x has a backslash
	return ((x - 0x20*ones) | (q - ones) | (b - ones) | x) & highs
}

// plainEnd returns the index of the first byte at or after j that a plain
// string may not hold as it is (a quote, a backslash, a control or
// non-ASCII byte), or len(b).
func plainEnd(b []byte, j int) int {
	for j+8 <= len(b) {
		if m := special8(binary.LittleEndian.Uint64(b[j:])); m != 0 {
			return j + bits.TrailingZeros64(m)>>3
		}
		j += 8
	}
	for j < len(b) && b[j] >= 0x20 && b[j] < 0x80 && b[j] != '"' && b[j] != '\\' {
		j++
	}
	return j
}

// stringValue consumes a string or null into dst, as encoding/json would
// (null leaves dst as it is).
func (s *scan) stringValue(dst *string) bool {
	if s.null() {
		return true
	}
	start := s.i
	raw, plain, ok := s.str()
	if !ok {
		return false
	}
	if plain {
		*dst = string(raw)
		return true
	}
	return json.Unmarshal(s.b[start:s.i], dst) == nil
}

// number consumes a JSON number and returns it.
func (s *scan) number() ([]byte, bool) {
	s.ws()
	start := s.i
	if s.i < len(s.b) && s.b[s.i] == '-' {
		s.i++
	}
	switch {
	case s.i < len(s.b) && s.b[s.i] == '0':
		s.i++
	case s.i < len(s.b) && s.b[s.i] >= '1' && s.b[s.i] <= '9':
		for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
			s.i++
		}
	default:
		return nil, false
	}
	if s.i < len(s.b) && s.b[s.i] == '.' {
		s.i++
		if !s.digits() {
			return nil, false
		}
	}
	if s.i < len(s.b) && (s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		s.i++
		if s.i < len(s.b) && (s.b[s.i] == '+' || s.b[s.i] == '-') {
			s.i++
		}
		if !s.digits() {
			return nil, false
		}
	}
	return s.b[start:s.i], true
}

func (s *scan) digits() bool {
	start := s.i
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		s.i++
	}
	return s.i > start
}

// skip consumes and validates any value.
func (s *scan) skip(depth int) bool {
	if depth > maxDepth {
		return false
	}
	switch c := s.peek(); c {
	case '{':
		return s.object(func(_ []byte, _ bool) bool { return s.skip(depth + 1) })
	case '[':
		return s.array(func() bool { return s.skip(depth + 1) })
	case '"':
		_, _, ok := s.str()
		return ok
	case 't':
		return s.lit("true")
	case 'f':
		return s.lit("false")
	case 'n':
		return s.lit("null")
	default:
		_, ok := s.number()
		return ok
	}
}

// object consumes an object, calling field for each key (raw, and whether
// it is plain) with the cursor on the value, which field must consume.
func (s *scan) object(field func(key []byte, plain bool) bool) bool {
	if s.peek() != '{' {
		return false
	}
	s.i++
	if s.peek() == '}' {
		s.i++
		return true
	}
	return s.members(field)
}

// members consumes an object's members, from the first one's key to the
// closing brace.
func (s *scan) members(field func(key []byte, plain bool) bool) bool {
	for {
		key, plain, ok := s.str()
		if !ok || s.peek() != ':' {
			return false
		}
		s.i++
		if !field(key, plain) {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return true
		default:
			return false
		}
	}
}

// array consumes an array, calling elem with the cursor on each element.
func (s *scan) array(elem func() bool) bool {
	if s.peek() != '[' {
		return false
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		return true
	}
	for {
		if !elem() {
			return false
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return true
		default:
			return false
		}
	}
}

// fields matches the keys of one object against the names of the fields it
// decodes. A key that is not a field is skipped; a key that encoding/json
// would match to a field without being its exact name (case, escapes), and a
// field given twice, end the fast path.
type fields struct {
	names []string
	seen  uint32
}

// match returns the index of key's field, -1 for a key to skip, or ok false.
func (f *fields) match(key []byte, plain bool) (idx int, ok bool) {
	if !plain {
		return -1, false
	}
	for i, n := range f.names {
		if string(key) == n {
			if f.seen&(1<<i) != 0 {
				return -1, false
			}
			f.seen |= 1 << i
			return i, true
		}
	}
	for _, n := range f.names {
		if bytes.EqualFold(key, []byte(n)) {
			return -1, false
		}
	}
	return -1, true
}

// fastDecode is Decode's single pass; ok false hands the body to decodeStd.
func fastDecode(body []byte, d *Decoder) (r Request, ok bool) {
	s := &scan{b: body, d: d}
	top := fields{names: []string{"spec", "context", "hosts", "weights", "rebuild", "resize", "live", "vmware"}}
	ok = s.object(func(key []byte, plain bool) bool {
		idx, ok := top.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == 0:
			return s.spec(&r.Spec)
		case idx == 1:
			return s.context(&r.Context)
		case idx == 2:
			return s.hosts(&r.Hosts)
		case idx == 3 && d.SkipWeights:
			return s.checkWeights()
		case idx == 3:
			return s.weights(&r.Weights, r.Hosts)
		case idx == 4:
			return s.boolValue(&r.Rebuild)
		case idx == 5:
			return s.boolValue(&r.Resize)
		case idx == 6:
			return s.boolValue(&r.Live)
		case idx == 7:
			return s.boolValue(&r.VMware)
		}
		return s.skip(1)
	})
	if !ok {
		return Request{}, false
	}
	if s.peek() != 0 || s.i != len(s.b) {
		return Request{}, false // trailing data
	}
	// decodeStd's checks and normalisation; on failure it says why.
	if r.Spec.Data.InstanceUUID == "" {
		return Request{}, false
	}
	r.Spec.Data.InstanceUUID = strings.ToLower(strings.TrimSpace(r.Spec.Data.InstanceUUID))
	for i := range r.Hosts {
		if r.Hosts[i].Host == "" {
			return Request{}, false
		}
	}
	return r, true
}

func (s *scan) boolValue(dst *bool) bool {
	switch s.peek() {
	case 't':
		*dst = true
		return s.lit("true")
	case 'f':
		*dst = false
		return s.lit("false")
	case 'n':
		return s.lit("null")
	}
	return false
}

func (s *scan) spec(dst *Spec) bool {
	if s.null() {
		return true
	}
	f := fields{names: []string{"nova_object.name", "nova_object.data"}}
	return s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == 0:
			return s.stringValue(&dst.Name)
		case idx == 1:
			return s.specData(&dst.Data)
		}
		return s.skip(2)
	})
}

func (s *scan) specData(dst *SpecData) bool {
	if s.null() {
		return true
	}
	f := fields{names: []string{"instance_uuid", "project_id", "user_id", "availability_zone", "num_instances", "scheduler_hints"}}
	return s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == 0:
			return s.stringValue(&dst.InstanceUUID)
		case idx == 1:
			return s.stringValue(&dst.ProjectID)
		case idx == 2:
			return s.stringValue(&dst.UserID)
		case idx == 3:
			return s.stringValue(&dst.AvailabilityZone)
		case idx == 4:
			if s.null() {
				return true
			}
			num, ok := s.number()
			if !ok {
				return false
			}
			n, err := strconv.ParseInt(string(num), 10, strconv.IntSize)
			dst.NumInstances = int(n)
			return err == nil
		case idx == 5:
			return s.hints(&dst.SchedulerHints)
		}
		return s.skip(3)
	})
}

// hints decodes scheduler hints as Hints.UnmarshalJSON does: each
// value a list of strings, from a string, or a list of strings and scalars
// (numbers and booleans in their JSON text), nulls, objects and lists inside
// lists left out, null values skipped, the last of repeated keys winning.
// Anything else is left to Hints.UnmarshalJSON.
func (s *scan) hints(dst *Hints) bool {
	s.ws()
	start := s.i
	if s.peek() != '{' {
		if !s.skip(3) {
			return false
		}
		return dst.UnmarshalJSON(s.b[start:s.i]) == nil
	}
	out := make(Hints)
	ok := s.object(func(rawKey []byte, plain bool) bool {
		key := string(rawKey)
		if !plain {
			quoted := append(append([]byte{'"'}, rawKey...), '"')
			if json.Unmarshal(quoted, &key) != nil {
				return false
			}
		}
		delete(out, key) // the last of repeated keys wins
		switch s.peek() {
		case 'n':
			return s.lit("null")
		case '[':
			var vals []string
			ok := s.array(func() bool {
				v, keep, ok := s.scalar()
				if keep {
					vals = append(vals, v)
				}
				return ok
			})
			if vals != nil {
				out[key] = vals
			}
			return ok
		}
		v, keep, ok := s.scalar()
		if keep {
			out[key] = []string{v}
		}
		return ok
	})
	if !ok {
		return false
	}
	*dst = out
	return true
}

// scalar consumes a list item and returns its text as a hint value: a
// string's content, a number's or boolean's JSON text, "" for null; keep is
// false for objects and lists.
func (s *scan) scalar() (v string, keep, ok bool) {
	s.ws()
	start := s.i
	switch s.peek() {
	case '"':
		raw, plain, ok := s.str()
		if !ok {
			return "", false, false
		}
		if plain {
			return string(raw), true, true
		}
		err := json.Unmarshal(s.b[start:s.i], &v)
		return v, err == nil, err == nil
	case 'n': // a null in a list reads as an empty string
		return "", true, s.lit("null")
	case '{', '[':
		return "", false, s.skip(4)
	}
	if !s.skip(4) {
		return "", false, false
	}
	return string(s.b[start:s.i]), true, true
}

func (s *scan) context(dst *Context) bool {
	if s.null() {
		return true
	}
	f := fields{names: []string{"request_id", "global_request_id", "user_id", "project_id"}}
	return s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == 0:
			return s.stringValue(&dst.RequestID)
		case idx == 1:
			return s.stringValue(&dst.GlobalRequestID)
		case idx == 2:
			return s.stringValue(&dst.UserID)
		case idx == 3:
			return s.stringValue(&dst.ProjectID)
		}
		return s.skip(2)
	})
}

// hostRef locates a host's names in the body (start and end offsets), so
// that all names are copied into one string instead of one allocation
// each. A start of refNone means the name is not in the body as it is (null,
// absent or escaped, then decoded on its own); refSame, for a hypervisor,
// that it is the host's name.
type hostRef struct {
	host, hyp [2]int32
}

const (
	refNone = -1
	refSame = -2
)

func (s *scan) hosts(dst *[]Host) bool {
	if s.null() {
		return true
	}
	if len(s.b) > math.MaxInt32 {
		return false
	}
	hosts, refs := s.d.hosts[:0], s.d.refs[:0]
	if cap(hosts) == 0 {
		// Size the lists from a cheap count of the host objects (compact
		// or not); a wrong count only costs capacity.
		n := bytes.Count(s.b[s.i:], []byte(`{"host"`))
		if n == 0 {
			n = bytes.Count(s.b[s.i:], []byte(`"host"`))
		}
		hosts, refs = make([]Host, 0, n), make([]hostRef, 0, n)
	}
	var hostBytes, hypBytes int
	ok := s.array(func() bool {
		hosts = append(hosts, Host{})
		refs = append(refs, hostRef{host: [2]int32{refNone}, hyp: [2]int32{refNone}})
		h, ref := &hosts[len(hosts)-1], &refs[len(refs)-1]
		if s.compactHost(ref, &hostBytes, &hypBytes) {
			return true
		}
		if s.null() {
			return true
		}
		f := fields{names: []string{"host", "hypervisor_hostname"}}
		return s.object(func(key []byte, plain bool) bool {
			idx, ok := f.match(key, plain)
			switch {
			case !ok:
				return false
			case idx == 0:
				return s.name(&h.Host, &ref.host, &hostBytes)
			case idx == 1 && s.d.SkipHypervisors:
				return s.stringValue(new(string))
			case idx == 1:
				if ref.host[0] >= 0 && s.peek() == '"' {
					save := s.i
					raw, plain, ok := s.str()
					if ok && plain && bytes.Equal(raw, s.b[ref.host[0]:ref.host[1]]) {
						ref.hyp[0] = refSame
						return true
					}
					s.i = save
				}
				return s.name(&h.HypervisorHostname, &ref.hyp, &hypBytes)
			}
			return s.skip(3)
		})
	})
	s.d.hosts, s.d.refs = hosts[:0], refs[:0]
	if !ok {
		return false
	}
	if s.d.InternNames {
		t := &s.d.names
		for i := range refs {
			var rep bool
			if r := refs[i].host; r[0] >= 0 {
				hosts[i].Host, rep = t.host(s.b[r[0]:r[1]])
			} else {
				hosts[i].Host, rep = t.hostString(hosts[i].Host)
			}
			s.d.repeated = append(s.d.repeated, rep)
			switch r := refs[i].hyp; {
			case r[0] == refSame:
				hosts[i].HypervisorHostname = hosts[i].Host
			case r[0] >= 0:
				hosts[i].HypervisorHostname = t.other(s.b[r[0]:r[1]])
			}
		}
		*dst = hosts
		return true
	}
	var hostArena, hypArena strings.Builder
	hostArena.Grow(hostBytes)
	hypArena.Grow(hypBytes)
	for i := range refs {
		if r := refs[i].host; r[0] >= 0 {
			hostArena.Write(s.b[r[0]:r[1]])
		}
		if r := refs[i].hyp; r[0] >= 0 {
			hypArena.Write(s.b[r[0]:r[1]])
		}
	}
	hostAll, hypAll := hostArena.String(), hypArena.String()
	var ho, yo int
	for i := range refs {
		if r := refs[i].host; r[0] >= 0 {
			end := ho + int(r[1]-r[0])
			hosts[i].Host = hostAll[ho:end]
			ho = end
		}
		switch r := refs[i].hyp; {
		case r[0] == refSame:
			hosts[i].HypervisorHostname = hosts[i].Host
		case r[0] >= 0:
			end := yo + int(r[1]-r[0])
			hosts[i].HypervisorHostname = hypAll[yo:end]
			yo = end
		}
	}
	*dst = hosts
	return true
}

// compactHost consumes a host in the form Nova writes it,
// {"host": "<name>", "hypervisor_hostname": "<name>"} with plain ASCII names
// and any space between the tokens, and locates its names, scanning each
// once; for any other form it consumes nothing and returns false, leaving
// the host to the general parser.
func (s *scan) compactHost(ref *hostRef, hostBytes, hypBytes *int) bool {
	b := s.b
	// Written compactly, the tokens before each name compare at once;
	// else each token after any space (the array leaves the cursor after
	// its comma). The literals are constants, so that each compares inline.
	i, ok := lit(b, s.i, `{"host":"`)
	if !ok {
		i, ok = lit(b, skipSpace(b, s.i), `{`)
		if ok {
			i, ok = lit(b, skipSpace(b, i), `"host"`)
		}
		if ok {
			i, ok = lit(b, skipSpace(b, i), `:`)
		}
		if ok {
			i, ok = lit(b, skipSpace(b, i), `"`)
		}
		if !ok {
			return false
		}
	}
	hs := i
	he := plainEnd(b, hs)
	i, ok = lit(b, he, `","hypervisor_hostname":"`)
	if !ok {
		i, ok = lit(b, he, `"`)
		if ok {
			i, ok = lit(b, skipSpace(b, i), `,`)
		}
		if ok {
			i, ok = lit(b, skipSpace(b, i), `"hypervisor_hostname"`)
		}
		if ok {
			i, ok = lit(b, skipSpace(b, i), `:`)
		}
		if ok {
			i, ok = lit(b, skipSpace(b, i), `"`)
		}
		if !ok {
			return false
		}
	}
	ys := i
	ye := plainEnd(b, ys)
	i, ok = lit(b, ye, `"`)
	if ok {
		i, ok = lit(b, skipSpace(b, i), `}`)
	}
	if !ok {
		return false
	}
	s.i = i
	ref.host = [2]int32{int32(hs), int32(he)}
	*hostBytes += he - hs
	switch {
	case s.d.SkipHypervisors:
	case string(b[hs:he]) == string(b[ys:ye]):
		ref.hyp[0] = refSame
	default:
		ref.hyp = [2]int32{int32(ys), int32(ye)}
		*hypBytes += ye - ys
	}
	return true
}

// tok consumes, after any space, the token t if it is next.
func (s *scan) tok(t string) bool {
	s.ws()
	if len(s.b)-s.i < len(t) || string(s.b[s.i:s.i+len(t)]) != t {
		return false
	}
	s.i += len(t)
	return true
}

// lit returns the index past t if b[i:] starts with it.
func lit(b []byte, i int, t string) (int, bool) {
	if len(b)-i < len(t) || string(b[i:i+len(t)]) != t {
		return i, false
	}
	return i + len(t), true
}

// skipSpace returns the index of the first byte at or after i that is not
// JSON space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\n' || b[i] == '\r' || b[i] == '\t') {
		i++
	}
	return i
}

// name consumes a host name: a plain string is located in ref (and its
// length added to total) for copying later; null and escaped strings are
// decoded into dst at once.
func (s *scan) name(dst *string, ref *[2]int32, total *int) bool {
	if s.peek() == '"' {
		save := s.i
		raw, plain, ok := s.str()
		if !ok {
			return false
		}
		if plain {
			start := s.i - 1 - len(raw)
			*ref = [2]int32{int32(start), int32(start + len(raw))}
			*total += len(raw)
			return true
		}
		s.i = save
	}
	return s.stringValue(dst)
}

// weights decodes the weights as encoding/json decodes them into
// map[string]float64: null leaves dst nil, a null value reads as 0, the last
// of repeated keys wins. Nova keys them by host, in the order of the hosts:
// a key that is the name of the host at its position takes that host's
// string, so only other keys are copied.
func (s *scan) weights(dst *map[string]float64, hosts []Host) bool {
	if s.null() {
		return true
	}
	m := make(map[string]float64, len(hosts))
	k := 0
	ok := s.object(func(raw []byte, plain bool) bool {
		var key string
		switch {
		case plain && k < len(hosts) && string(raw) == hosts[k].Host:
			key = hosts[k].Host
		case plain:
			key = string(raw)
		default: // decoded apart, so that only escaped keys cost an allocation
			var name string
			if json.Unmarshal(append(append([]byte{'"'}, raw...), '"'), &name) != nil {
				return false
			}
			key = name
		}
		k++
		v, ok := s.weight()
		m[key] = v
		return ok
	})
	if !ok {
		return false
	}
	*dst = m
	return true
}

// checkWeights consumes the weights, accepting what weights accepts, and
// keeps nothing. A number converts unless it has an exponent or hundreds of
// digits, so only those are converted.
func (s *scan) checkWeights() bool {
	if s.null() {
		return true
	}
	if s.peek() != '{' {
		return false
	}
	// Members with a plain key and a number with no exponent, the form
	// Nova's side writes, are read here, each scanned once; the general
	// parser takes over at the first other one.
	b, i := s.b, skipSpace(s.b, s.i+1)
	for done := 0; ; done++ {
		end, ok := tightWeight(b, i)
		switch {
		case !ok && done == 0:
			return s.object(checkWeight(s))
		case !ok:
			s.i = i
			return s.members(checkWeight(s))
		case b[end] == '}':
			s.i = end + 1
			return true
		}
		i = skipSpace(b, end+1) // past the comma
	}
}

// tightWeight reads a member "<plain key>":<number> at b[i:], with any space
// between its tokens, whose number has no exponent and fewer than 300
// bytes, so that it surely converts. It returns the index of the comma or
// closing brace after it.
func tightWeight(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	e := plainEnd(b, i+1)
	if e >= len(b) || b[e] != '"' {
		return 0, false
	}
	e = skipSpace(b, e+1)
	if e >= len(b) || b[e] != ':' {
		return 0, false
	}
	start := skipSpace(b, e+1)
	n := start
	if n < len(b) && b[n] == '-' {
		n++
	}
	d := n
	for n < len(b) && b[n] >= '0' && b[n] <= '9' {
		n++
	}
	if n == d || n-d > 1 && b[d] == '0' {
		return 0, false
	}
	if n < len(b) && b[n] == '.' {
		f := n + 1
		for n = f; n < len(b) && b[n] >= '0' && b[n] <= '9'; n++ {
		}
		if n == f {
			return 0, false
		}
	}
	if n-start >= 300 {
		return 0, false
	}
	n = skipSpace(b, n)
	if n >= len(b) || b[n] != ',' && b[n] != '}' {
		return 0, false
	}
	return n, true
}

// checkWeight checks one weight's value.
func checkWeight(s *scan) func([]byte, bool) bool {
	return func([]byte, bool) bool {
		if s.null() {
			return true
		}
		num, ok := s.number()
		if !ok {
			return false
		}
		if !fitsFloat(num) {
			_, ok = parseFloat(num)
		}
		return ok
	}
}

// fitsFloat reports whether the JSON number num surely converts to a finite
// float64: it has no exponent and fewer than 300 digits.
func fitsFloat(num []byte) bool {
	if len(num) >= 300 {
		return false
	}
	for _, c := range num {
		if c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// weight consumes a weight: a number, as a float64, or null, read as 0.
func (s *scan) weight() (float64, bool) {
	if s.null() {
		return 0, true
	}
	num, ok := s.number()
	if !ok {
		return 0, false
	}
	return parseFloat(num)
}

// pow10 holds the powers of ten that are exact in a float64.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15}

// parseFloat converts a JSON number as strconv.ParseFloat does. A number of
// at most 15 digits and no exponent is converted directly: its digits and
// the power of ten it is divided by are exact in a float64, so one division
// rounds as ParseFloat does. Any other number goes to ParseFloat.
func parseFloat(num []byte) (float64, bool) {
	var mant uint64
	digits, point := 0, -1
	for i, c := range num {
		switch {
		case c >= '0' && c <= '9':
			mant = mant*10 + uint64(c-'0')
			digits++
		case c == '.':
			point = i
		case c == '-' && i == 0:
		default: // an exponent
			digits = len(pow10)
		}
	}
	if digits >= len(pow10) {
		v, err := strconv.ParseFloat(string(num), 64)
		return v, err == nil
	}
	v := float64(mant)
	if point >= 0 {
		v /= pow10[len(num)-1-point]
	}
	if num[0] == '-' {
		v = -v
	}
	return v, true
}
