package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ledgerfence/ledgerfence/pkg/nova"
)

// agree fails the test unless decodeNova answers body as nova.Decode does
// (Weights aside: the fast path does not keep them).
func agree(t *testing.T, body []byte) {
	t.Helper()
	want, wantErr := nova.Decode(body)
	got, gotErr := decodeNova(body)
	if (wantErr == nil) != (gotErr == nil) || (wantErr != nil && wantErr.Error() != gotErr.Error()) {
		t.Fatalf("body %q:\nnova.Decode: %v\ndecodeNova:  %v", clipBody(body), wantErr, gotErr)
	}
	if wantErr != nil {
		return
	}
	got.Weights, want.Weights = nil, nil
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("body %q:\nnova.Decode: %#v\ndecodeNova:  %#v", clipBody(body), want, got)
	}
}

func clipBody(b []byte) []byte {
	if len(b) > 300 {
		return append(b[:300:300], "..."...)
	}
	return b
}

func decodeCases(t testing.TB) map[string][]byte {
	full := edited(t, func(map[string]any) {})
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, full, "", "  "); err != nil {
		t.Fatal(err)
	}
	const min = `{"spec":{"nova_object.data":{"instance_uuid":"6F1C0D3E-8B2A-4C1D-9E7F-0A1B2C3D4E5F"}},"hosts":[{"host":"hm1"}]}`
	sub := func(old, new string) []byte { return []byte(strings.Replace(min, old, new, 1)) }
	return map[string][]byte{
		"full request":                   full,
		"full request, indented":         pretty.Bytes(),
		"minimal":                        []byte(min),
		"escaped host name":              sub(`"hm1"`, `"h\u006d1\n"`),
		"hypervisor named as the host":   sub(`{"host":"hm1"}`, `{"host":"hm1","hypervisor_hostname":"hm1"}`),
		"hypervisor before the host":     sub(`{"host":"hm1"}`, `{"hypervisor_hostname":"hm1","host":"hm1"}`),
		"unicode host name":              sub(`"hm1"`, `"ホスト1"`),
		"invalid UTF-8 host name":        sub(`"hm1"`, "\"h\xffm1\""),
		"host key in upper case":         sub(`{"host"`, `{"HOST"`),
		"escaped key":                    sub(`{"host"`, `{"\u0068ost"`),
		"Kelvin-sign key":                sub(`"spec"`, `"\u212a"`),
		"long-s key":                     sub(`"spec"`, "\"\u017fpec\""),
		"long-s host key":                sub(`{"host"`, "{\"ho\u017ft\""),
		"duplicate host key":             sub(`{"host":"hm1"}`, `{"host":"hm1","host":"hm2"}`),
		"duplicate hosts":                []byte(strings.TrimSuffix(min, "}") + `,"hosts":[{"host":"hm9"}]}`),
		"null host":                      sub(`[{"host":"hm1"}]`, `[null]`),
		"null host name":                 sub(`{"host":"hm1"}`, `{"host":null}`),
		"empty host name":                sub(`{"host":"hm1"}`, `{"host":""}`),
		"host name of the wrong type":    sub(`"hm1"`, `1`),
		"null hosts":                     sub(`[{"host":"hm1"}]`, `null`),
		"empty hosts":                    sub(`[{"host":"hm1"}]`, `[]`),
		"null everything":                []byte(`{"spec":{"nova_object.name":null,"nova_object.data":{"instance_uuid":"X","project_id":null,"num_instances":null,"scheduler_hints":null}},"context":null,"weights":null,"live":null}`),
		"null spec":                      []byte(`{"spec":null,"hosts":[]}`),
		"hints as strings and numbers":   sub(`"}},`, `","scheduler_hints":{"_nova_check_type":"rebuild","n":[1,true,null,{"a":1}],"z":null}}},`),
		"hints of the wrong type":        sub(`"}},`, `","scheduler_hints":[1]}},`),
		"hints as a string":              sub(`"}},`, `","scheduler_hints":"x"}},`),
		"hints with every kind":          sub(`"}},`, `","scheduler_hints":{"a":"x","b":["y","z\n",1.50,-2e3,false,null,{},[1]],"c":null,"d":{"e":1},"e":[],"f":[null],"g":7,"h":true,"\u00e9\n":"k","a":["last"],"h\u00e9":"\ud83d\ude00"}}},`),
		"hints with spaced escaped keys": sub(`"}},`, `","scheduler_hints":{ "\u00e9\t" : "k" , "x\"y"	:	["v"] }}},`),
		"hints with a repeated key":      sub(`"}},`, `","scheduler_hints":{"a":"x","a":null}}},`),
		"weights":                        []byte(strings.TrimSuffix(min, "}") + `,"weights":{"hm1":1.5,"hm2":-2e3,"hm3":null,"h\u00e9":0}}`),
		"weight out of range":            []byte(strings.TrimSuffix(min, "}") + `,"weights":{"hm1":1e999}}`),
		"weight as a string":             []byte(strings.TrimSuffix(min, "}") + `,"weights":{"hm1":"1"}}`),
		"weights as a list":              []byte(strings.TrimSuffix(min, "}") + `,"weights":["hm1"]}`),
		"num_instances as a float":       sub(`"}},`, `","num_instances":1.0}},`),
		"num_instances huge":             sub(`"}},`, `","num_instances":99999999999999999999}},`),
		"flags":                          []byte(strings.TrimSuffix(min, "}") + `,"rebuild":true,"resize":false,"live":true,"vmware":false}`),
		"flag of the wrong type":         []byte(strings.TrimSuffix(min, "}") + `,"live":"yes"}`),
		"trailing data":                  []byte(min + `x`),
		"trailing object":                []byte(min + `{}`),
		"trailing space":                 []byte(min + " \n\t"),
		"leading space":                  []byte(" \r\n" + min),
		"top-level null":                 []byte(`null`),
		"top-level list":                 []byte(`[]`),
		"empty":                          {},
		"truncated":                      []byte(min[:len(min)-3]),
		"control character in string":    sub(`"hm1"`, "\"h\x01\""),
		"bad escape":                     sub(`"hm1"`, `"h\x"`),
		"deep unknown field":             []byte(strings.TrimSuffix(min, "}") + `,"deep":` + strings.Repeat("[", 600) + strings.Repeat("]", 600) + `}`),
		"bad number in unknown field":    []byte(strings.TrimSuffix(min, "}") + `,"x":01}`),
		"missing instance":               []byte(`{"spec":{"nova_object.data":{}},"hosts":[]}`),
		"instance with spaces":           sub(`"6F1C`, `"  6F1C`),
		"context":                        []byte(strings.TrimSuffix(min, "}") + `,"context":{"request_id":"req-1","global_request_id":"g","user_id":"u","project_id":"p","roles":["a"],"service_catalog":[{"x":{}}]}}`),
	}
}

func TestDecodeNovaAgrees(t *testing.T) {
	for name, body := range decodeCases(t) {
		t.Run(name, func(t *testing.T) { agree(t, body) })
	}
}

// The fast path must be the one taken for what Nova sends, or the
// benchmarks measure nova.Decode.
func TestDecodeNovaFastPathTaken(t *testing.T) {
	cases := decodeCases(t)
	big := withHosts(novaRequest(t), "hm1", "hm2")
	for name, body := range map[string][]byte{
		"full request":           cases["full request"],
		"full request, indented": cases["full request, indented"],
		"with weights":           encode(t, big),
		"escaped host name":      cases["escaped host name"],
	} {
		if _, ok := fastDecode(body); !ok {
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

func BenchmarkDecodeNova(b *testing.B) {
	for _, n := range []int{1000} {
		names := make([]string, n)
		for i := range names {
			names[i] = benchHost(i).Name
		}
		body := encode(b, withHosts(novaRequest(b), names...))
		for name, decode := range map[string]func([]byte) (nova.Request, error){"fast": decodeNova, "nova.Decode": nova.Decode} {
			b.Run(fmt.Sprintf("%s/hosts=%d", name, n), func(b *testing.B) {
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				for b.Loop() {
					if _, err := decode(body); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

func TestSpecial8(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			word := []byte("aaaaaaaa")
			word[pos] = byte(c)
			x := uint64(0)
			for i := 7; i >= 0; i-- {
				x = x<<8 | uint64(word[i])
			}
			want := c < 0x20 || c >= 0x80 || c == '"' || c == '\\'
			if got := special8(x); got != want {
				t.Errorf("byte %#x at %d: special8 = %v, want %v", c, pos, got, want)
			}
		}
	}
}
