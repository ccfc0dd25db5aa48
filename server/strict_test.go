package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeStrict(t *testing.T) {
	tests := []struct {
		name, body, want string // want "" = accepted
	}{
		{"plain", `{"handler":{"command":["true"]},"context":{"requestId":"r"},"limits":{"timeoutMs":5}}`, ""},
		{"maps keep their keys", `{"handler":{"command":["x"]},"permissions":{"env":{"set":{"A":"1","a":"2"}}}}`, ""},
		{"input is free-form", `{"handler":{"command":["x"]},"input":{"Anything":[{"Goes":1}]}}`, ""},
		{"adapterContext is free-form", `{"handler":{"command":["x"]},"context":{"adapterContext":{"type":"cli","Argv":[]}}}`, ""},
		{"case differs", `{"handler":{"command":["x"]},"Limits":{}}`, `unknown field "Limits": field names are case-sensitive; did you mean "limits"?`},
		{"nested case", `{"handler":{"command":["x"]},"limits":{"timeoutms":1}}`, `"limits.timeoutms"`},
		{"in an array", `{"handler":{"command":["x"]},"files":[{"path":"a","content":"","Mode":"0644"}]}`, `"files[0].Mode"`},
		{"host path", `{"handler":{"command":["x"]},"context":{"PluginRoot":"/"}}`, "context.PluginRoot: host paths are not accepted over HTTP"},
		{"duplicate", `{"handler":{"command":["x"]},"stdin":"a","stdin":"b"}`, `"stdin": the key is given twice`},
		{"duplicate in free-form", `{"handler":{"command":["x"]},"input":[{"k":1,"k":1}]}`, `"input[0].k": the key is given twice`},
		{"trailing data", `{"handler":{"command":["x"]}} 1`, "exactly one"},
		{"too deep", `{"handler":{"command":["x"]},"input":` + strings.Repeat("[", maxNesting+2) + strings.Repeat("]", maxNesting+2) + `}`, "nested more than"},
		{"empty", ``, "empty body"},
		{"truncated", `{"handler":{"comm`, "ends in the middle"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var req RunRequest
			err := decodeStrict([]byte(tc.body), &req)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(toAPIError(err).Message, tc.want)):
				t.Fatalf("error %v, want one naming %q", err, tc.want)
			case err != nil && toAPIError(err).Status != http.StatusBadRequest:
				t.Fatalf("status %d, want 400", toAPIError(err).Status)
			}
		})
	}
}

// FuzzDecodeStrict: the strict decoder never panics, refuses only with a
// 400, and what it accepts decodes exactly as encoding/json decodes it.
// Crashers found are kept in testdata/fuzz/FuzzDecodeStrict.
func FuzzDecodeStrict(f *testing.F) {
	for _, s := range []string{
		`{"handler":{"command":["sh","-c","echo hi"]},"files":[{"path":"a.txt","content":"aGk=","encoding":"base64","mode":"0755"}]}`,
		`{"handler":{"runtime":"node","file":"h.js"},"input":{"a":[1,2,{"b":null}]},"context":{"user":{"id":"u"},"adapterMeta":{"type":"cli"}}}`,
		`{"handler":{"command":["x"]},"context":{"Outdir":"/etc"}}`,
		`{"handler":{"command":["x"]},"handler":{"command":["y"]}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var got RunRequest
		err := decodeStrict(data, &got)
		if err != nil {
			var syn *json.SyntaxError
			if e := toAPIError(err); e.Status != http.StatusBadRequest && !errors.As(err, &syn) {
				t.Fatalf("refused with %d %s: %v", e.Status, e.Code, err)
			}
			return
		}
		var want RunRequest
		if err := json.Unmarshal(data, &want); err != nil {
			t.Fatalf("accepted what encoding/json refuses: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decoded %+v, encoding/json %+v", got, want)
		}
	})
}
