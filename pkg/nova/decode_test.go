package nova

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unsafe"
)

// novaRequest returns testdata/nova_request.json, a full request as Nova
// sends it, as a generic document to edit.
func novaRequest(t testing.TB) map[string]any {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "nova_request.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// withHosts sets the request's candidate hosts, and a weight for each, as
// Nova sends them (the weights and hypervisor names are not decoded).
func withHosts(m map[string]any, names ...string) map[string]any {
	hosts := make([]any, len(names))
	weights := map[string]any{}
	for i, n := range names {
		hosts[i] = map[string]any{"host": n, "hypervisor_hostname": n + ".example.org"}
		weights[n] = float64(i)
	}
	m["hosts"] = hosts
	m["weights"] = weights
	return m
}

func encode(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// hostNames returns n host names of the form a large region has.
func hostNames(n int) []string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("compute-%05d.region-one.example.org", i)
	}
	return names
}

// agree fails the test unless Decode answers body as decodeStd does, and
// so does a Decoder after another body and after body itself, telling
// exactly the hosts named before in the request.
func agree(t *testing.T, body []byte) {
	t.Helper()
	want, wantErr := decodeStd(body)
	got, gotErr := Decode(body)
	same(t, body, "Decode", want, wantErr, got, gotErr)
	otherOnce.Do(func() { otherBody = encode(t, withHosts(novaRequest(t), "hx", "hy", "hz", "hm1")) })
	var d Decoder
	if _, err := d.Decode(otherBody); err != nil {
		t.Fatal(err)
	}
	for _, after := range []string{"another body", "itself"} {
		got, gotErr = d.Decode(body)
		same(t, body, "Decoder, after "+after, want, wantErr, got, gotErr)
		seen := map[string]bool{}
		for i, h := range got.Hosts {
			if d.Repeated(i) != seen[h.Host] {
				t.Fatalf("body %q: Repeated(%d) = %v for %q", clipBody(body), i, d.Repeated(i), h.Host)
			}
			seen[h.Host] = true
		}
	}
}

// otherBody is a request decoded before the body agree checks.
var (
	otherOnce sync.Once
	otherBody []byte
)

func same(t *testing.T, body []byte, name string, want Request, wantErr error, got Request, gotErr error) {
	t.Helper()
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("body %q:\ndecodeStd: %v\n%s: %v", clipBody(body), wantErr, name, gotErr)
	}
	if wantErr != nil {
		return
	}
	if len(got.Hosts) == 0 && len(want.Hosts) == 0 {
		got.Hosts = want.Hosts // empty and nil alike: reused memory is never nil
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body %q:\ndecodeStd: %#v\n%s: %#v", clipBody(body), want, name, got)
	}
}

func clipBody(b []byte) []byte {
	if len(b) > 300 {
		return append(b[:300:300], "..."...)
	}
	return b
}

func decodeCases(t testing.TB) map[string][]byte {
	full := encode(t, novaRequest(t))
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, full, "", "  "); err != nil {
		t.Fatal(err)
	}
	const min = `{"spec":{"nova_object.data":{"instance_uuid":"6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F"}},"hosts":[{"host":"hm1"}]}`
	sub := func(old, new string) []byte { return []byte(strings.Replace(min, old, new, 1)) }
	with := func(fields string) []byte { return []byte(strings.TrimSuffix(min, "}") + "," + fields + "}") }
	return map[string][]byte{
		"full request":                          full,
		"full request, indented":                pretty.Bytes(),
		"full request, as Python writes":        pythonSpaced(full),
		"hosts and weights, as Python writes":   pythonSpaced(encode(t, withHosts(novaRequest(t), "hm1", "hm2", "hm1"))),
		"minimal":                               []byte(min),
		"escaped host name":                     sub(`"hm1"`, `"h\u006d1\n"`),
		"hypervisor named as the host":          sub(`{"host":"hm1"}`, `{"host":"hm1","hypervisor_hostname":"hm1"}`),
		"hypervisor before the host":            sub(`{"host":"hm1"}`, `{"hypervisor_hostname":"hm1","host":"hm1"}`),
		"unicode host name":                     sub(`"hm1"`, `"ホスト1"`),
		"invalid UTF-8 host name":               sub(`"hm1"`, "\"h\xffm1\""),
		"host key in upper case":                sub(`{"host"`, `{"HOST"`),
		"escaped key":                           sub(`{"host"`, `{"\u0068ost"`),
		"Kelvin-sign key":                       sub(`"spec"`, `"\u212a"`),
		"long-s key":                            sub(`"spec"`, "\"\u017fpec\""),
		"long-s host key":                       sub(`{"host"`, "{\"ho\u017ft\""),
		"duplicate host key":                    sub(`{"host":"hm1"}`, `{"host":"hm1","host":"hm2"}`),
		"duplicate hosts":                       with(`"hosts":[{"host":"hm9"}]`),
		"repeated hosts":                        sub(`[{"host":"hm1"}]`, `[{"host":"hm1"},{"host":"hm2"},{"host":"hm1"}]`),
		"repeated host, escaped":                sub(`[{"host":"hm1"}]`, `[{"host":"hm1"},{"host":"h\u006d1"},{"host":"hm2"}]`),
		"null host":                             sub(`[{"host":"hm1"}]`, `[null]`),
		"hosts, as Python writes":               sub(`[{"host":"hm1"}]`, `[{"host": "hm1", "hypervisor_hostname": "hm1.x"}, {"host": "hm2", "hypervisor_hostname": "hm2"}]`),
		"hosts, two spaces":                     sub(`[{"host":"hm1"}]`, `[{"host":  "hm1", "hypervisor_hostname":"hm1"}]`),
		"host, space before the brace":          sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":"x" }]`),
		"host, a third field":                   sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":"x","y":1}]`),
		"host, null hypervisor":                 sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":null}]`),
		"host, escaped hypervisor":              sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":"h\"x"}]`),
		"host, fields in an escaped name":       sub(`[{"host":"hm1"}]`, `[{"host":"a\",\"hypervisor_hostname\":\"b","hypervisor_hostname":"c"}]`),
		"host, unclosed hypervisor":             sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":"x`),
		"host, empty names":                     sub(`[{"host":"hm1"}]`, `[{"host":"","hypervisor_hostname":""}]`),
		"host, non-ASCII hypervisor":            sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":"ホスト"}]`),
		"host, hypervisor a number":             sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":5}]`),
		"host, hypervisor an object":            sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":{"a":[1]}},{"host":"hm2"}]`),
		"host, hypervisor a bad number":         sub(`[{"host":"hm1"}]`, `[{"host":"hm1","hypervisor_hostname":-01}]`),
		"host only, spaced":                     sub(`[{"host":"hm1"}]`, "[ { \"host\" : \"hm1\" } ,\n{\"host\":\"hm2\"\t}]"),
		"host only, unclosed":                   sub(`[{"host":"hm1"}]`, `[{"host":"hm1"`),
		"host, comma then brace":                sub(`[{"host":"hm1"}]`, `[{"host":"hm1",}]`),
		"host, a field then the name":           sub(`[{"host":"hm1"}]`, `[{"x":null,"host":"hm1"}]`),
		"null host name":                        sub(`{"host":"hm1"}`, `{"host":null}`),
		"empty host name":                       sub(`{"host":"hm1"}`, `{"host":""}`),
		"host name of the wrong type":           sub(`"hm1"`, `1`),
		"null hosts":                            sub(`[{"host":"hm1"}]`, `null`),
		"empty hosts":                           sub(`[{"host":"hm1"}]`, `[]`),
		"null everything":                       []byte(`{"spec":{"nova_object.name":null,"nova_object.data":{"instance_uuid":"X","project_id":null,"num_instances":null,"scheduler_hints":null}},"context":null,"weights":null,"live":null}`),
		"null spec":                             []byte(`{"spec":null,"hosts":[]}`),
		"hints as strings and numbers":          sub(`"}},`, `","scheduler_hints":{"_nova_check_type":"rebuild","n":[1,true,null,{"a":1}],"z":null}}},`),
		"hints of the wrong type":               sub(`"}},`, `","scheduler_hints":[1]}},`),
		"hints as a string":                     sub(`"}},`, `","scheduler_hints":"x"}},`),
		"hints with every kind":                 sub(`"}},`, `","scheduler_hints":{"a":"x","b":["y","z\n",1.50,-2e3,false,null,{},[1]],"c":null,"d":{"e":1},"e":[],"f":[null],"g":7,"h":true,"\u00e9\n":"k","a":["last"],"h\u00e9":"\ud83d\ude00"}}},`),
		"hints with spaced escaped keys":        sub(`"}},`, `","scheduler_hints":{ "\u00e9\t" : "k" , "x\"y"	:	["v"] }}},`),
		"hints with a repeated key":             sub(`"}},`, `","scheduler_hints":{"a":"x","a":null}}},`),
		"weights":                               with(`"weights":{"hm1":1.5,"hm2":-2e3,"hm3":null,"h\u00e9":0}`),
		"weights, spaced":                       with(`"weights": { "hm1" : 1.5 ,	"hm2"	:	2 }`),
		"weights, two spaces":                   with(`"weights":{"hm1":  1,  "hm2":2}`),
		"weights, space before a comma":         with(`"weights":{"hm1":1 ,"hm2":2}`),
		"weights, a null after numbers":         with(`"weights":{"hm1":1,"hm2":-0.25,"hm3":null,"hm4":4}`),
		"weights, an exponent after numbers":    with(`"weights":{"hm1":1,"hm2":2E+2,"hm3":3}`),
		"weights, an escaped key after numbers": with(`"weights":{"hm1":1,"h\u006d2":2}`),
		"weights, trailing comma":               with(`"weights":{"hm1":1,"hm2":2,}`),
		"weights, leading zero":                 with(`"weights":{"hm1":1,"hm2":01}`),
		"weights, bare minus":                   with(`"weights":{"hm1":1,"hm2":-}`),
		"weights, bare fraction":                with(`"weights":{"hm1":1,"hm2":2.}`),
		"weights, fraction with no integer":     with(`"weights":{"hm1":.5}`),
		"weights, colon missing":                with(`"weights":{"hm1":1,"hm2"2}`),
		"weights, unclosed":                     with(`"weights":{"hm1":1,"hm2":2`),
		"weights, 299-digit integer":            with(`"weights":{"hm1":` + strings.Repeat("9", 299) + `}`),
		"weights, 300-digit integer":            with(`"weights":{"hm1":` + strings.Repeat("9", 300) + `}`),
		"weights, 309-digit integer":            with(`"weights":{"hm1":1,"hm2":` + strings.Repeat("9", 309) + `}`),
		"weights, long fraction":                with(`"weights":{"hm1":0.` + strings.Repeat("5", 400) + `}`),
		"weights before the hosts":              []byte(`{"weights":{"hm1":1},"spec":{"nova_object.data":{"instance_uuid":"x"}},"hosts":[{"host":"hm1"}]}`),
		"weights with a repeated key":           with(`"weights":{"hm1":1,"hm2":2,"hm1":3}`),
		"weights with escaped keys":             with(`"weights":{"h\u006d1":1,"x\"y":2,"a\/b":3,"` + "h\xffm" + `":4,"hm2":5}`),
		"weights, not numbers":                  with(`"weights":{"hm1":"1","hm2":{"x":[true,false,null]},"hm3":[]}`),
		"weights of every number form":          with(`"weights":{"a":0,"b":-0,"c":1e2,"d":1E-2,"e":0.000001,"f":123456789012345678901234567890,"g":4.9e-324,"h":2.5e-400}`),
		"empty weights":                         with(`"weights":{}`),
		"weight out of range":                   with(`"weights":{"hm1":1e999}`),
		"weight as a string":                    with(`"weights":{"hm1":"1"}`),
		"weight as an object":                   with(`"weights":{"hm1":{}}`),
		"weight key not a string":               with(`"weights":{1:1}`),
		"weights as a list":                     with(`"weights":["hm1"]`),
		"weights, truncated":                    with(`"weights":{"hm1":1,`),
		"weights as a string":                   with(`"weights":"hm1"`),
		"weights, a bad escape":                 with(`"weights":{"h\\q":1}`),
		"weights, a control character":          with("\"weights\":{\"h\x01\":1}"),
		"weights, true misspelt":                with(`"weights":{"hm1":tru}`),
		"weights, in upper case":                with(`"WEIGHTS":{"hm1":1}`),
		"weights, deep":                         with(`"weights":` + strings.Repeat(`{"a":`, 511) + `1` + strings.Repeat(`}`, 511)),
		"weights, deeper":                       with(`"weights":` + strings.Repeat(`{"a":`, 512) + `1` + strings.Repeat(`}`, 512)),
		"num_instances as a float":              sub(`"}},`, `","num_instances":1.0}},`),
		"num_instances huge":                    sub(`"}},`, `","num_instances":99999999999999999999}},`),
		"flags":                                 with(`"rebuild":true,"resize":false,"live":true,"vmware":false`),
		"flag of the wrong type":                with(`"live":"yes"`),
		"trailing data":                         []byte(min + `x`),
		"trailing object":                       []byte(min + `{}`),
		"trailing space":                        []byte(min + " \n\t"),
		"leading space":                         []byte(" \r\n" + min),
		"top-level null":                        []byte(`null`),
		"top-level list":                        []byte(`[]`),
		"empty":                                 {},
		"truncated":                             []byte(min[:len(min)-3]),
		"control character in string":           sub(`"hm1"`, "\"h\x01\""),
		"bad escape":                            sub(`"hm1"`, `"h\x"`),
		"deep unknown field":                    with(`"deep":` + strings.Repeat("[", 600) + strings.Repeat("]", 600)),
		"bad number in unknown field":           with(`"x":01`),
		"missing instance":                      []byte(`{"spec":{"nova_object.data":{}},"hosts":[]}`),
		"instance with spaces":                  sub(`"6F1C`, `"  6F1C`),
		"context":                               with(`"context":{"request_id":"req-1","global_request_id":"g","user_id":"u","project_id":"p","roles":["a"],"service_catalog":[{"x":{}}]}`),
	}
}

func TestDecodeAgrees(t *testing.T) {
	for name, body := range decodeCases(t) {
		t.Run(name, func(t *testing.T) { agree(t, body) })
	}
}

// The fast path must be the one taken for what Nova sends, or Decode is
// decodeStd and BenchmarkDecode measures it twice.
func TestDecodeFastPathTaken(t *testing.T) {
	cases := decodeCases(t)
	for _, name := range []string{
		"full request",
		"full request, indented",
		"full request, as Python writes",
		"hosts and weights, as Python writes",
		"escaped host name",
		"hosts, as Python writes",
		"host only, spaced",
		"host, hypervisor a number",
		"weights with escaped keys",
		"weights",
		"weights, not numbers",
		"weights as a list",
		"weight out of range",
	} {
		if _, ok := fastDecode(cases[name], &Decoder{}); !ok {
			t.Errorf("%s: fast path not taken", name)
		}
	}
}

func FuzzDecodeNova(f *testing.F) {
	for _, body := range decodeCases(f) {
		f.Add(body)
	}
	f.Fuzz(func(t *testing.T, body []byte) { agree(t, body) })
}

// pythonSpaced writes compact JSON as Python's json.dumps writes it by
// default: one space after each comma and colon between tokens.
func pythonSpaced(compact []byte) []byte {
	out := make([]byte, 0, len(compact)+len(compact)/8)
	inString, escaped := false, false
	for _, c := range compact {
		out = append(out, c)
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out
}

// BenchmarkDecode compares Decode with decodeStd and with a reused Decoder,
// as filterd decodes, on a request of 1,000 hosts with a weight for each,
// written compactly (as ledgerfence's Nova plugin writes it), as Python's
// json.dumps writes it by default, and with one token per line.
func BenchmarkDecode(b *testing.B) {
	compact := encode(b, withHosts(novaRequest(b), hostNames(1000)...))
	python := pythonSpaced(compact)
	var spaced bytes.Buffer
	if err := json.Indent(&spaced, compact, "", ""); err != nil { // one token per line
		b.Fatal(err)
	}
	var reused Decoder
	for _, bc := range []struct {
		name   string
		decode func([]byte) (Request, error)
	}{{"Decode", Decode}, {"decodeStd", decodeStd}, {"Decoder", reused.Decode}} {
		for _, form := range []struct {
			name string
			body []byte
		}{{"compact", compact}, {"python", python}, {"spaced", spaced.Bytes()}} {
			body := form.body
			b.Run(bc.name+"/"+form.name+"/hosts=1000", func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					r, err := bc.decode(body)
					if err != nil || len(r.Hosts) != 1000 {
						b.Fatalf("%d hosts: %v", len(r.Hosts), err)
					}
				}
			})
		}
	}
}

// special8 must mark the first special byte of a word exactly, whatever
// follows it, and mark nothing in a word without one.
func TestSpecial8(t *testing.T) {
	special := func(c byte) bool { return c < 0x20 || c >= 0x80 || c == '"' || c == '\\' }
	check := func(word []byte) {
		t.Helper()
		first := 8
		for i, c := range word {
			if special(c) {
				first = i
				break
			}
		}
		got := 8
		if m := special8(binary.LittleEndian.Uint64(word)); m != 0 {
			got = bits.TrailingZeros64(m) >> 3
		}
		if got != first {
			t.Errorf("word %q: special8 marks byte %d first, want %d", word, got, first)
		}
	}
	for pos := range 8 {
		for c := range 256 {
			word := []byte("aaaaaaaa")
			word[pos] = byte(c)
			check(word)
		}
	}
	// Several special bytes, and bytes next to the thresholds that borrow.
	r := rand.New(rand.NewPCG(3, 4))
	pool := []byte{0x00, 0x01, 0x1f, 0x20, 0x21, '"', '!', '#', '\\', '[', ']', 0x7f, 0x80, 0xff, 'a', '0'}
	for range 200_000 {
		word := make([]byte, 8)
		for i := range word {
			word[i] = pool[r.IntN(len(pool))]
		}
		check(word)
	}
}

func TestDecodeFullRequest(t *testing.T) {
	r, err := Decode(encode(t, novaRequest(t)))
	if err != nil {
		t.Fatal(err)
	}
	d := r.Spec.Data
	if r.Spec.Name != "RequestSpec" || d.InstanceUUID != "6f1c0d3e-8b2a-4c1d-9e7f-0a1b2c3d4e5f" ||
		d.ProjectID != "a1b2c3d4e5f60718293a4b5c6d7e8f90" || d.AvailabilityZone != "az-1" || d.NumInstances != 1 {
		t.Errorf("spec %+v", r.Spec)
	}
	if want := []Host{{"hm1"}, {"hm2"}, {"hm3"}, {"hm4"}, {"hm5"}}; !slices.Equal(r.Hosts, want) {
		t.Errorf("hosts %+v, want %+v", r.Hosts, want)
	}
}

func TestDecodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want error
	}{
		{"not JSON", `{`, ErrMalformed},
		{"wrong type", `{"spec":{"nova_object.data":{"instance_uuid":1}}}`, ErrMalformed},
		{"no instance", `{"spec":{"nova_object.data":{}},"hosts":[{"host":"h"}]}`, ErrMissingInstance},
		{"host without a name", `{"spec":{"nova_object.data":{"instance_uuid":"x"}},"hosts":[{"host":"h"},{}]}`, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := Decode([]byte(tc.body)); !errors.Is(err, tc.want) {
				t.Errorf("error %v, want %v", err, tc.want)
			}
		})
	}
}

func TestOperation(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hints string // the scheduler_hints value; "" for none
		want  string
	}{
		{"no hints", ``, OpCreate},
		{"null hints", `null`, OpCreate},
		{"hint absent", `{"group":["g"]}`, OpCreate},
		{"hint null", `{"_nova_check_type":null}`, OpCreate},
		{"hint as a list", `{"_nova_check_type":["live_migrate"]}`, OpLiveMigrate},
		{"hint as a string", `{"_nova_check_type":"resize"}`, OpResize},
		{"first of a list", `{"_nova_check_type":["evacuate","resize"]}`, OpEvacuate},
		{"upper case", `{"_nova_check_type":["REBUILD"]}`, OpRebuild},
		{"live-migration", `{"_nova_check_type":"live-migration"}`, OpLiveMigrate},
		{"live_migration", `{"_nova_check_type":"live_migration"}`, OpLiveMigrate},
		{"migrate", `{"_nova_check_type":["migrate"]}`, OpMigrate},
		{"unshelve", `{"_nova_check_type":["unshelve"]}`, OpUnshelve},
		{"create", `{"_nova_check_type":["create"]}`, OpCreate},
		{"unknown", `{"_nova_check_type":["shelve"]}`, OpOther},
		{"empty list", `{"_nova_check_type":[]}`, OpCreate},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"spec":{"nova_object.data":{"instance_uuid":"x"`
			if tc.hints != "" {
				body += `,"scheduler_hints":` + tc.hints
			}
			body += `}}}`
			r, err := Decode([]byte(body))
			if err != nil {
				t.Fatal(err)
			}
			if got := r.Operation(); got != tc.want {
				t.Errorf("Operation() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	for _, tc := range []struct {
		name string
		ctx  Context
		want string
	}{
		{"none", Context{}, ""},
		{"request id only", Context{RequestID: "req-1"}, "req-1"},
		{"global id wins", Context{RequestID: "req-1", GlobalRequestID: "req-g"}, "req-g"},
		{"global id only", Context{GlobalRequestID: "req-g"}, "req-g"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := Request{Context: tc.ctx}
			if got := r.RequestID(); got != tc.want {
				t.Errorf("RequestID() = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestResponseJSON(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hosts []string
		want  string
	}{
		{"nil", nil, `{"hosts":[]}`},
		{"empty", []string{}, `{"hosts":[]}`},
		{"hosts in order", []string{"hm3", "hm1"}, `{"hosts":["hm3","hm1"]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.Marshal(Response{Hosts: tc.hosts})
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

// Capacity must count the memory a Decoder keeps, a failed decode's
// included, so that its owner can drop a Decoder grown by a huge body.
func TestDecoderCapacity(t *testing.T) {
	var d Decoder
	if d.Capacity() != 0 {
		t.Fatalf("zero Decoder holds %d hosts", d.Capacity())
	}
	body := encode(t, withHosts(novaRequest(t), hostNames(500)...))
	if _, err := d.Decode(body); err != nil {
		t.Fatal(err)
	}
	if d.Capacity() < 500 {
		t.Errorf("after 500 hosts, Capacity() = %d", d.Capacity())
	}
	var fresh Decoder
	bad := append(bytes.TrimSuffix(encode(t, withHosts(novaRequest(t), hostNames(2000)...)), []byte("}")), ',')
	if _, err := fresh.Decode(bad); err == nil {
		t.Fatal("a truncated body decoded")
	}
	if fresh.Capacity() < 2000 {
		t.Errorf("after a failed body of 2,000 hosts, Capacity() = %d", fresh.Capacity())
	}
}

// A Decoder that interns names returns, for a name it has returned before,
// the same string, and tells the hosts that repeat an earlier one; between
// requests it forgets them all past MaxInterned.
func TestDecoderInternsNames(t *testing.T) {
	var d Decoder
	first, err := d.Decode(encode(t, withHosts(novaRequest(t), "hm1", "hm2", "hm1")))
	if err != nil {
		t.Fatal(err)
	}
	if unsafe.StringData(first.Hosts[0].Host) != unsafe.StringData(first.Hosts[2].Host) {
		t.Error("a name given twice in one request was returned in different memory")
	}
	if got := []bool{d.Repeated(0), d.Repeated(1), d.Repeated(2), d.Repeated(3)}; !slices.Equal(got, []bool{false, false, true, false}) {
		t.Errorf("Repeated(0..3) = %v for hm1, hm2, hm1", got)
	}
	// Hosts is the Decoder's memory: keep the strings before the next Decode.
	names := []string{first.Hosts[0].Host, first.Hosts[1].Host}
	again, err := d.Decode(encode(t, withHosts(novaRequest(t), "hm2", "hm3", "hm1")))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, h := range again.Hosts {
		got = append(got, h.Host)
	}
	if want := []string{"hm2", "hm3", "hm1"}; !slices.Equal(got, want) {
		t.Fatalf("second request's hosts: %q, want %q", got, want)
	}
	for _, p := range [][2]string{{names[1], again.Hosts[0].Host}, {names[0], again.Hosts[2].Host}} {
		if unsafe.StringData(p[0]) != unsafe.StringData(p[1]) {
			t.Errorf("%q was returned twice in different memory", p[0])
		}
	}
	for i := range 3 {
		if d.Repeated(i) {
			t.Errorf("host %d of hm2, hm3, hm1 reads as repeated: a host named in the request before is not", i)
		}
	}

	// One request may name more hosts than are kept: it is decoded whole,
	// every repeat known; the next request starts afresh.
	many := append(hostNames(MaxInterned+10), "compute-00007.region-one.example.org")
	r, err := d.Decode(encode(t, withHosts(novaRequest(t), many...)))
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range r.Hosts {
		if h.Host != many[i] || d.Repeated(i) != (i == len(many)-1) {
			t.Fatalf("host %d = %+v, repeated %v, want %s", i, h, d.Repeated(i), many[i])
		}
	}
	if _, err := d.Decode(encode(t, withHosts(novaRequest(t), "hm1"))); err != nil {
		t.Fatal(err)
	}
	if n := len(d.names.list); n > 1 {
		t.Errorf("after a request of 1 name that followed %d, %d names kept", len(many), n)
	}
}

// Names are forgotten between requests once their bytes pass
// MaxInternedBytes, however few they are: long names cannot pile up.
func TestDecoderForgetsLongNames(t *testing.T) {
	var d Decoder
	long := strings.Repeat("x", 300_000)
	for i := range 10 {
		if _, err := d.Decode(encode(t, withHosts(novaRequest(t), long+strconv.Itoa(i)))); err != nil {
			t.Fatal(err)
		}
		if d.names.bytes > MaxInternedBytes+len(long)+8 {
			t.Fatalf("after %d requests of one 300 KB name, %d bytes of names kept", i+1, d.names.bytes)
		}
	}
}

// names must tell repeated hosts as a map does, across growth, requests and
// the wrap of its request counter, and return equal strings.
func TestNamesAgreeWithMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var tab names
	for round := range 300 {
		if round == 150 {
			tab.current = ^uint32(0) // the next request wraps
		}
		tab.next()
		seen := map[string]bool{}
		n := r.IntN(3000)
		for range n {
			name := "compute-" + strconv.Itoa(r.IntN(n+1))
			var got string
			var rep bool
			if r.IntN(2) == 0 {
				got, rep = tab.host([]byte(name))
			} else {
				got, rep = tab.hostString(name)
			}
			if got != name || rep != seen[name] {
				t.Fatalf("round %d: host(%q) = %q, %v; want %v", round, name, got, rep, seen[name])
			}
			seen[name] = true
		}
	}
}

// The one-pass reader of hosts must take the hosts Nova's side writes,
// compact, as Python writes them or with other space, and leave every other
// form, consuming nothing, to the general parser. What it takes,
// FuzzDecodeNova and TestDecodeAgrees check against encoding/json.
func TestOnePassHosts(t *testing.T) {
	for _, c := range []struct {
		host string
		ok   bool
		name string
	}{
		{`{"host":"hm1","hypervisor_hostname":"hm1.x"}`, true, "hm1"},
		{`{"host": "hm1", "hypervisor_hostname": "hm1.x"}`, true, "hm1"},
		{`{"host":"hm1","hypervisor_hostname":"hm1"}`, true, "hm1"},
		{`{"host":"","hypervisor_hostname":""}`, true, ""},
		{`{"host":"hm1"}`, true, "hm1"},
		{`{ "host" : "hm1" }`, true, "hm1"},
		{`{"host":  "hm1","hypervisor_hostname":"x"}`, true, "hm1"},
		{`{"host":"hm1","hypervisor_hostname":"x" }`, true, "hm1"},
		{"{\n \"host\" : \"hm1\" ,\n \"hypervisor_hostname\"\t:\"x\"\r\n}", true, "hm1"},
		{` {"host": "hm1", "hypervisor_hostname": "x"}`, true, "hm1"}, // after an array's comma
		{`{"host":"hm1" "hypervisor_hostname":"x"}`, false, ""},
		{`{"host":"hm1",}`, false, ""},
		{`{"host":"hm1","hypervisor_hostname":"x","y":1}`, false, ""},
		{`{"host":"hm1","hypervisor_hostname":null}`, false, ""},
		{`{"host":"hm1","hypervisor_hostname":5}`, false, ""},
		{`{"host":"h\"1","hypervisor_hostname":"x"}`, false, ""},
		{`{"host":"hm1","hypervisor_hostname":"h\"x"}`, false, ""},
		{`{"host":"hm1","hypervisor_hostname":"ホ"}`, false, ""},
		{`{"host":"ホ"}`, false, ""},
		{`{"hypervisor_hostname":"x","host":"hm1"}`, false, ""},
		{`{"host":"hm1","hypervisor_hostname":"x`, false, ""},
		{`{"host":"hm1"`, false, ""},
	} {
		s := scan{b: []byte(c.host + `,`), d: &Decoder{}}
		name, ok := s.novaHost()
		if ok != c.ok {
			t.Errorf("novaHost(%q) = %v, want %v", c.host, ok, c.ok)
			continue
		}
		if !ok {
			if s.i != 0 {
				t.Errorf("novaHost(%q) consumed %d bytes and refused", c.host, s.i)
			}
			continue
		}
		if string(name) != c.name || s.i != len(c.host) {
			t.Errorf("novaHost(%q): host %q, at %d; want %q, %d", c.host, name, s.i, c.name, len(c.host))
		}
	}
}

// Each list of field names must hold every JSON name of its struct, and
// only those: a name left out of a list keyed by its constants would read
// as "", the empty key.
func TestFieldNames(t *testing.T) {
	for _, c := range []struct {
		names []string
		typ   any
	}{
		{requestFieldNames[:], Request{}},
		{specFieldNames[:], Spec{}},
		{dataFieldNames[:], SpecData{}},
		{contextFieldNames[:], Context{}},
		{hostFieldNames[:], Host{}},
	} {
		typ := reflect.TypeOf(c.typ)
		var tags []string
		for i := range typ.NumField() {
			tags = append(tags, strings.Split(typ.Field(i).Tag.Get("json"), ",")[0])
		}
		names := slices.Sorted(slices.Values(c.names))
		slices.Sort(tags)
		if !slices.Equal(names, tags) || len(names) > 32 {
			t.Errorf("%s: field names %q, JSON names %q", typ.Name(), names, tags)
		}
	}
}
