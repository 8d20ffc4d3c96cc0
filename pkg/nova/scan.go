package nova

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
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
	end, ok := skipNumber(s.b, s.i)
	s.i = end
	return s.b[start:end], ok
}

// skip consumes and validates any value, as encoding/json's scanner does
// with the value of a key that is no field.
func (s *scan) skip(depth int) bool {
	end, ok := skipValue(s.b, s.i, depth)
	s.i = end
	return ok
}

// skipValue returns the index past the value at b[i:] (after any space),
// which it validates as encoding/json's scanner does; false for a syntax
// error or nesting deeper than maxDepth. It is skip over indices, so that
// the cursor stays in a register for the unknown fields, the bulk of a
// request.
func skipValue(b []byte, i, depth int) (int, bool) {
	if depth > maxDepth {
		return i, false
	}
	i = skipSpace(b, i)
	if i >= len(b) {
		return i, false
	}
	var ok bool
	switch b[i] {
	case '{':
		if i = skipSpace(b, i+1); i < len(b) && b[i] == '}' {
			return i + 1, true
		}
		for {
			if i, ok = skipString(b, i); !ok {
				return i, false
			}
			if i = skipSpace(b, i); i >= len(b) || b[i] != ':' {
				return i, false
			}
			// A number, as each of Nova's weights, is read in place.
			if i = skipSpace(b, i+1); i < len(b) && (b[i] >= '0' && b[i] <= '9' || b[i] == '-') {
				i, ok = skipNumber(b, i)
			} else {
				i, ok = skipValue(b, i, depth+1)
			}
			if !ok {
				return i, false
			}
			switch i = skipSpace(b, i); {
			case i < len(b) && b[i] == ',':
				i = skipSpace(b, i+1)
			case i < len(b) && b[i] == '}':
				return i + 1, true
			default:
				return i, false
			}
		}
	case '[':
		if i = skipSpace(b, i+1); i < len(b) && b[i] == ']' {
			return i + 1, true
		}
		for {
			if i, ok = skipValue(b, i, depth+1); !ok {
				return i, false
			}
			switch i = skipSpace(b, i); {
			case i < len(b) && b[i] == ',':
				i++
			case i < len(b) && b[i] == ']':
				return i + 1, true
			default:
				return i, false
			}
		}
	case '"':
		return skipString(b, i)
	case 't':
		return lit(b, i, "true")
	case 'f':
		return lit(b, i, "false")
	case 'n':
		return lit(b, i, "null")
	}
	return skipNumber(b, i)
}

// skipString returns the index past the string at b[i].
func skipString(b []byte, i int) (int, bool) {
	if i >= len(b) || b[i] != '"' {
		return i, false
	}
	if j := plainEnd(b, i+1); j < len(b) && b[j] == '"' {
		return j + 1, true
	}
	s := scan{b: b, i: i} // escapes, control or non-ASCII bytes
	_, _, ok := s.str()
	return s.i, ok
}

// skipNumber returns the index past the JSON number at b[i].
func skipNumber(b []byte, i int) (int, bool) {
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = skipDigits(b, i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		start := i + 1
		if i = skipDigits(b, start); i == start {
			return i, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		start := i
		if i = skipDigits(b, start); i == start {
			return i, false
		}
	}
	return i, true
}

// skipDigits returns the index of the first byte at or after i that is not
// a decimal digit.
func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// more consumes what follows a member or element: a comma (more true) or
// the closing brace or bracket end (more false, ok true); anything else is
// an error (ok false).
func (s *scan) more(end byte) (more, ok bool) {
	switch s.peek() {
	case ',':
		s.i++
		return true, true
	case end:
		s.i++
		return false, true
	}
	return false, false
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
	for {
		key, plain, ok := s.str()
		if !ok || s.peek() != ':' {
			return false
		}
		s.i++
		if !field(key, plain) {
			return false
		}
		if more, ok := s.more('}'); !more {
			return ok
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
		if more, ok := s.more(']'); !more {
			return ok
		}
	}
}

// The fields fastDecode reads, object by object: each constant is the index
// of its field's name in the list below it, which names them by constant, so
// that neither order can drift from the other. A list holds at most 32
// names (fields.seen).
const (
	reqSpec = iota
	reqContext
	reqHosts
	reqRebuild
	reqResize
	reqLive
	reqVMware
	reqFields
)

// requestFieldNames are Request's JSON names.
var requestFieldNames = [reqFields]string{
	reqSpec:    "spec",
	reqContext: "context",
	reqHosts:   "hosts",
	reqRebuild: "rebuild",
	reqResize:  "resize",
	reqLive:    "live",
	reqVMware:  "vmware",
}

const (
	specName = iota
	specData
	specFields
)

// specFieldNames are Spec's JSON names.
var specFieldNames = [specFields]string{
	specName: "nova_object.name",
	specData: "nova_object.data",
}

const (
	dataInstanceUUID = iota
	dataProjectID
	dataUserID
	dataAvailabilityZone
	dataNumInstances
	dataSchedulerHints
	dataFields
)

// dataFieldNames are SpecData's JSON names.
var dataFieldNames = [dataFields]string{
	dataInstanceUUID:     "instance_uuid",
	dataProjectID:        "project_id",
	dataUserID:           "user_id",
	dataAvailabilityZone: "availability_zone",
	dataNumInstances:     "num_instances",
	dataSchedulerHints:   "scheduler_hints",
}

const (
	ctxRequestID = iota
	ctxGlobalRequestID
	ctxUserID
	ctxProjectID
	ctxFields
)

// contextFieldNames are Context's JSON names.
var contextFieldNames = [ctxFields]string{
	ctxRequestID:       "request_id",
	ctxGlobalRequestID: "global_request_id",
	ctxUserID:          "user_id",
	ctxProjectID:       "project_id",
}

const (
	hostName = iota
	hostFields
)

// hostFieldNames are Host's JSON names.
var hostFieldNames = [hostFields]string{
	hostName: "host",
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

// fastDecode is Decode's single pass, as one request of d's; ok false hands
// the body to decodeStd.
func fastDecode(body []byte, d *Decoder) (r Request, ok bool) {
	d.repeated = d.repeated[:0]
	d.names.next()
	s := &scan{b: body, d: d}
	f := fields{names: requestFieldNames[:]}
	ok = s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == reqSpec:
			return s.spec(&r.Spec)
		case idx == reqContext:
			return s.context(&r.Context)
		case idx == reqHosts:
			return s.hosts(&r.Hosts)
		case idx == reqRebuild:
			return s.boolValue(&r.Rebuild)
		case idx == reqResize:
			return s.boolValue(&r.Resize)
		case idx == reqLive:
			return s.boolValue(&r.Live)
		case idx == reqVMware:
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
	f := fields{names: specFieldNames[:]}
	return s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == specName:
			return s.stringValue(&dst.Name)
		case idx == specData:
			return s.specData(&dst.Data)
		}
		return s.skip(2)
	})
}

func (s *scan) specData(dst *SpecData) bool {
	if s.null() {
		return true
	}
	f := fields{names: dataFieldNames[:]}
	return s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == dataInstanceUUID:
			return s.stringValue(&dst.InstanceUUID)
		case idx == dataProjectID:
			return s.stringValue(&dst.ProjectID)
		case idx == dataUserID:
			return s.stringValue(&dst.UserID)
		case idx == dataAvailabilityZone:
			return s.stringValue(&dst.AvailabilityZone)
		case idx == dataNumInstances:
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
		case idx == dataSchedulerHints:
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
	f := fields{names: contextFieldNames[:]}
	return s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx == ctxRequestID:
			return s.stringValue(&dst.RequestID)
		case idx == ctxGlobalRequestID:
			return s.stringValue(&dst.GlobalRequestID)
		case idx == ctxUserID:
			return s.stringValue(&dst.UserID)
		case idx == ctxProjectID:
			return s.stringValue(&dst.ProjectID)
		}
		return s.skip(2)
	})
}

func (s *scan) hosts(dst *[]Host) bool {
	if s.null() {
		return true
	}
	hosts := s.d.hosts[:0]
	if cap(hosts) == 0 {
		// Size the list from a cheap count of the host objects (compact
		// or not); a wrong count only costs capacity.
		n := bytes.Count(s.b[s.i:], []byte(`{"host"`))
		if n == 0 {
			n = bytes.Count(s.b[s.i:], []byte(`"host"`))
		}
		hosts = make([]Host, 0, n)
	}
	ok := s.array(func() bool {
		name, repeated, ok := s.host()
		hosts = append(hosts, Host{Host: name})
		s.d.repeated = append(s.d.repeated, repeated)
		return ok
	})
	s.d.hosts = hosts[:0]
	if !ok {
		return false
	}
	*dst = hosts
	return true
}

// host consumes one element of the hosts and returns its name, interned,
// and whether the request named it before; "" for a host with no name (or
// an empty one), which ends the fast path.
func (s *scan) host() (name string, repeated, ok bool) {
	raw, ok := s.novaHost()
	if !ok {
		if raw, name, ok = s.hostObject(); !ok {
			return "", false, false
		}
	}
	switch {
	case len(raw) > 0:
		name, repeated = s.d.names.host(raw)
	case name != "":
		name, repeated = s.d.names.hostString(name)
	}
	return name, repeated, true
}

// hostObject consumes a host in a form novaHost does not take. Its name is
// raw when the body holds it as it is, else decoded into name ("" for
// none).
func (s *scan) hostObject() (raw []byte, name string, ok bool) {
	if s.null() {
		return nil, "", true
	}
	f := fields{names: hostFieldNames[:]}
	ok = s.object(func(key []byte, plain bool) bool {
		idx, ok := f.match(key, plain)
		switch {
		case !ok:
			return false
		case idx != hostName:
			return s.skip(3)
		}
		save := s.i
		if r, plain, ok := s.str(); ok && plain {
			raw = r
			return true
		}
		s.i = save
		name, ok = s.decoded()
		return ok
	})
	return raw, name, ok
}

// decoded consumes a string or null and returns it as encoding/json decodes
// it ("" for null).
func (s *scan) decoded() (string, bool) {
	var v string
	ok := s.stringValue(&v)
	return v, ok
}

// novaHost consumes a host in the forms Nova's side writes,
// {"host": "<name>", "hypervisor_hostname": "<name>"} or {"host": "<name>"},
// with plain ASCII names and any space between the tokens, and returns the
// host's name as it is in the body, scanning each name once; for any other
// form it consumes nothing and returns false, leaving the host to the
// general parser.
func (s *scan) novaHost() (name []byte, ok bool) {
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
			return nil, false
		}
	}
	hs := i
	he := plainEnd(b, hs)
	i, ok = lit(b, he, `","hypervisor_hostname":"`)
	if !ok {
		i, ok = lit(b, he, `"`)
		if ok {
			i = skipSpace(b, i)
			if j, end := lit(b, i, `}`); end {
				s.i = j
				return b[hs:he], true
			}
			i, ok = lit(b, i, `,`)
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
			return nil, false
		}
	}
	i, ok = lit(b, plainEnd(b, i), `"`)
	if ok {
		i, ok = lit(b, skipSpace(b, i), `}`)
	}
	if !ok {
		return nil, false
	}
	s.i = i
	return b[hs:he], true
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
