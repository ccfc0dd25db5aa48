package protocol

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		line    string
		want    Message // nil: invalid
		errPart string
	}{
		{line: `{"type":"ready"}`, want: ReadyMessage{}},
		{line: `{"type":"cancel"}`, want: CancelMessage{}},
		{line: `{"type":"log","level":"warn","message":"m","meta":{"k":1}}`, want: LogMessage{Level: "warn", Message: "m", Meta: map[string]any{"k": 1.0}}},
		{line: `{"type":"log","level":"info","message":"m","meta":null}`, want: LogMessage{Level: "info", Message: "m"}},
		{line: `{"type":"progress","percent":40,"message":"x"}`, want: ProgressMessage{Percent: 40, Message: "x"}},
		{line: `{"type":"progress","percent":0}`, want: ProgressMessage{}},
		{line: `{"type":"progress","percent":100}`, want: ProgressMessage{Percent: 100}},
		{line: `{"type":"result","ok":true,"data":{"sum":3}}`, want: ResultMessage{OK: true, Data: json.RawMessage(`{"sum":3}`)}},
		{line: `{"type":"result","ok":true}`, want: ResultMessage{OK: true}},
		{line: `{"type":"result","ok":true,"data":null,"error":null}`, want: ResultMessage{OK: true}},
		{line: `{"type":"result","ok":false,"error":{"code":"E_X","message":"m","stack":"s"}}`, want: ResultMessage{Error: &ErrorInfo{Code: "E_X", Message: "m", Stack: "s"}}},
		{line: `{"type":"result","ok":false,"error":{}}`, want: ResultMessage{Error: &ErrorInfo{}}},
		{line: " \t{\"type\":\"ready\"}\r", want: ReadyMessage{}},
		{line: `{"type":"result","ok":false,"exitCode":3,"error":{"code":"HANDLER_EXIT_CODE","message":"m"}}`, want: ResultMessage{ExitCode: 3, Error: &ErrorInfo{Code: CodeHandlerExitCode, Message: "m"}}},

		{line: `not json`, errPart: "not a JSON object"},
		{line: `[1,2]`, errPart: "not a JSON object"},
		{line: `null`, errPart: "not a JSON object"},
		{line: `{}`, errPart: `missing "type"`},
		{line: `{"type":7}`, errPart: `"type" is not a string`},
		{line: `{"type":"hello"}`, errPart: "unknown message type"},
		{line: `{"TYPE":"ready"}`, errPart: `missing "type"`},
		{line: `{"type":"ready","extra":1}`, errPart: "unknown field"},
		{line: `{"type":"log","level":"trace","message":"m"}`, errPart: "log level"},
		{line: `{"type":"log","level":"info"}`, errPart: `missing string "message"`},
		{line: `{"type":"log","level":"info","message":5}`, errPart: `"message" is not a string`},
		{line: `{"type":"log","level":"info","message":"m","meta":[1]}`, errPart: `"meta" is not an object`},
		{line: `{"type":"log","Level":"info","level":"info","message":"m"}`, errPart: "unknown field"},
		{line: `{"type":"progress","percent":101}`, errPart: "outside 0..100"},
		{line: `{"type":"progress","percent":-0.5}`, errPart: "outside 0..100"},
		{line: `{"type":"progress","percent":"50"}`, errPart: "not a number"},
		{line: `{"type":"progress"}`, errPart: "not a number"},
		{line: `{"type":"result","ok":false}`, errPart: "carries no error"},
		{line: `{"type":"result","ok":false,"error":null}`, errPart: "carries no error"},
		{line: `{"type":"result","ok":true,"error":{"code":"X"}}`, errPart: "carries an error"},
		{line: `{"type":"result","ok":false,"data":1,"error":{"code":"X"}}`, errPart: "carries data"},
		{line: `{"type":"result","ok":"yes"}`, errPart: "wrong type"},
		{line: `{"type":"result","data":1}`, errPart: `missing "ok"`},
		{line: `{"type":"result","ok":false,"error":"boom"}`, errPart: "not an object"},
		{line: `{"type":"result","ok":false,"error":{"code":1}}`, errPart: `"code" is not a string`},
		{line: `{"type":"result","ok":false,"error":{"code":"X","why":1}}`, errPart: "unknown field"},
		{line: `{"type":"run","handler":{"file":"a"},"context":[]}`, errPart: "not an object"},
		{line: `{"type":"result","ok":false,"exitCode":3,"error":{"code":"E_X"}}`, errPart: "exitCode is for a HANDLER_EXIT_CODE error"},
		{line: `{"type":"result","ok":true,"exitCode":3}`, errPart: "exitCode is for a HANDLER_EXIT_CODE error"},
		{line: `{"type":"result","ok":false,"exitCode":256,"error":{"code":"HANDLER_EXIT_CODE"}}`, errPart: "1 to 255"},
		{line: `{"type":"result","ok":false,"exitCode":-1,"error":{"code":"HANDLER_EXIT_CODE"}}`, errPart: "1 to 255"},
		{line: `{"type":"result","ok":false,"exitCode":"3","error":{"code":"HANDLER_EXIT_CODE"}}`, errPart: "not an integer"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := Parse([]byte(tt.line))
			if tt.want == nil {
				if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), tt.errPart) {
					t.Fatalf("Parse = %#v, %v; want E_INVALID_MESSAGE containing %q", got, err, tt.errPart)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("Parse = %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	msgs := []Message{
		ReadyMessage{}, CancelMessage{},
		RunMessage{Handler: HandlerRef{File: "h", Export: "run"}, Input: json.RawMessage(`{"a":[1]}`), Context: json.RawMessage(`{"requestId":"r"}`), MaxMessageBytes: 10},
		LogMessage{Level: "error", Message: "line\nbreak \u2028", Meta: map[string]any{"x": "y"}},
		ProgressMessage{Percent: 12.5, Message: "p"},
		ResultMessage{OK: true, Data: json.RawMessage(`[1,2]`)},
		ResultMessage{Error: &ErrorInfo{Code: "C", Message: "m", Stack: "s"}},
	}
	for _, m := range msgs {
		line, err := Encode(m)
		if err != nil {
			t.Fatal(err)
		}
		if bytes.IndexByte(line, '\n') != len(line)-1 {
			t.Fatalf("%T: encoded line has an inner newline: %q", m, line)
		}
		got, err := Parse(line[:len(line)-1])
		if err != nil || !reflect.DeepEqual(got, m) {
			t.Fatalf("round trip %T: got %#v, %v; line %s", m, got, err, line)
		}
	}
}

func TestDecoderStream(t *testing.T) {
	in := "{\"type\":\"ready\"}\n\n   \n" +
		"garbage\n" +
		"{\"type\":\"log\",\"level\":\"info\",\"message\":\"" + strings.Repeat("x", 100) + "\"}\n" + // oversized at max 64
		"{\"type\":\"progress\",\"percent\":5}\n" +
		"{\"type\":\"result\",\"ok\":true}" // no final newline
	d := NewDecoder(strings.NewReader(in), 64)
	type step struct {
		typ     string
		errPart string
	}
	want := []step{
		{typ: TypeReady},
		{errPart: "line 4: not a JSON object"},
		{errPart: "line 5: message longer than 64 bytes"},
		{typ: TypeProgress},
		{errPart: "line 7: message not terminated by a newline"},
	}
	for i, w := range want {
		m, err := d.Next()
		if w.errPart != "" {
			if !errors.Is(err, ErrInvalidMessage) || !strings.Contains(err.Error(), w.errPart) {
				t.Fatalf("step %d: got %v, %v; want error %q", i, m, err, w.errPart)
			}
			continue
		}
		if err != nil || m.Type() != w.typ {
			t.Fatalf("step %d: got %v, %v; want %s", i, m, err, w.typ)
		}
	}
	if _, err := d.Next(); err != io.EOF {
		t.Fatalf("at end: %v, want io.EOF", err)
	}
	if d.Offset() != int64(len(in)) {
		t.Fatalf("Offset = %d, want %d", d.Offset(), len(in))
	}
}

// endless is a line that never ends: the decoder must give up after the
// limit instead of buffering it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestDecoderEndlessLine(t *testing.T) {
	const max = 1 << 20
	r := &endless{}
	d := NewDecoder(r, max)
	_, err := d.Next()
	if !errors.Is(err, ErrInvalidMessage) {
		t.Fatalf("Next = %v, want E_INVALID_MESSAGE", err)
	}
	if r.n > max+2*readChunk {
		t.Fatalf("read %d bytes of an endless line before giving up; limit %d", r.n, max)
	}
	if cap(d.line) > max+readChunk {
		t.Fatalf("buffered %d bytes", cap(d.line))
	}
}

// FuzzDecoder: whatever the bytes, the decoder terminates, never panics,
// accounts for every byte, and every message it accepts re-encodes to a
// line that parses to the same message.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte("{\"type\":\"ready\"}\n{\"type\":\"result\",\"ok\":true,\"data\":[1]}\n"), 1024)
	f.Add([]byte("{\"type\":\"log\",\"level\":\"info\",\"message\":\"m\",\"meta\":{\"a\":{\"b\":[]}}}\n"), 40)
	f.Add([]byte("\n\n{\"type\":\"progress\",\"percent\":1e2}\nxx"), 16)
	f.Fuzz(func(t *testing.T, in []byte, max int) {
		if max <= 0 || max > 1<<16 {
			max = 1 << 16
		}
		d := NewDecoder(bytes.NewReader(in), max)
		for i := 0; ; i++ {
			if i > len(in)+1 {
				t.Fatalf("decoder did not terminate on %d bytes", len(in))
			}
			m, err := d.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				if !errors.Is(err, ErrInvalidMessage) {
					t.Fatalf("unexpected error %v", err)
				}
				continue
			}
			line, err := Encode(m)
			if err != nil {
				t.Fatalf("accepted %#v but cannot encode it: %v", m, err)
			}
			again, err := Parse(line[:len(line)-1])
			if err != nil {
				t.Fatalf("re-encoded %s does not parse: %v", line, err)
			}
			a, _ := Encode(again)
			if !bytes.Equal(a, line) {
				t.Fatalf("not stable: %s then %s", line, a)
			}
		}
		if d.Offset() != int64(len(in)) {
			t.Fatalf("Offset %d, want %d", d.Offset(), len(in))
		}
	})
}
