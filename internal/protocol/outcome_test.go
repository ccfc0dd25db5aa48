package protocol

import (
	"encoding/json"
	"syscall"
	"testing"
)

func TestJudge(t *testing.T) {
	okResult := &ResultMessage{OK: true, Data: json.RawMessage(`{"sum":3}`)}
	errResult := func(code string) *ResultMessage {
		return &ResultMessage{Error: &ErrorInfo{Code: code, Message: "m", Stack: "s"}}
	}
	exit0 := ExitInfo{}
	exit2 := ExitInfo{Code: 2}
	segv := ExitInfo{Code: -1, Signal: syscall.SIGSEGV}
	killed := ExitInfo{Code: -1, Signal: syscall.SIGKILL, BySandbox: true}
	invalid := &ErrorInfo{Code: CodeInvalidMessage, Message: "second result"}
	exitCode2 := &ResultMessage{ExitCode: 2, Error: &ErrorInfo{Code: CodeHandlerExitCode, Message: "handler returned exit code 2"}}
	exit3 := ExitInfo{Code: 3}

	tests := []struct {
		name          string
		st            state
		requireResult bool
		exit          ExitInfo
		verdict       Verdict
		code          string
		data          string
	}{
		{"result then exit 0", state{result: okResult}, true, exit0, VerdictOK, "", `{"sum":3}`},
		{"result then sandbox kill", state{result: okResult}, true, killed, VerdictOK, "", `{"sum":3}`},
		{"result then exit 2", state{result: okResult}, true, exit2, VerdictHandlerError, CodeHandlerCrashed, ""},
		{"result then SIGSEGV", state{result: okResult}, true, segv, VerdictHandlerError, CodeHandlerCrashed, ""},
		{"error result", state{result: errResult("E_X")}, true, exit0, VerdictHandlerError, "E_X", ""},
		{"error result without code", state{result: errResult("")}, true, exit0, VerdictHandlerError, CodeHandlerError, ""},
		{"not found", state{result: errResult(CodeHandlerNotFound)}, true, exit0, VerdictSetupError, CodeHandlerNotFound, ""},
		{"memory", state{result: errResult(CodeMemoryLimit)}, true, exit0, VerdictMemoryLimit, CodeMemoryLimit, ""},
		{"error result then crash", state{result: errResult("E_X")}, true, exit2, VerdictHandlerError, CodeHandlerCrashed, ""},
		{"exit code then that exit", state{result: exitCode2}, true, exit2, VerdictHandlerError, CodeHandlerExitCode, ""},
		{"exit code then another exit", state{result: exitCode2}, true, exit3, VerdictHandlerError, CodeHandlerCrashed, ""},
		{"exit code then a signal", state{result: exitCode2}, true, segv, VerdictHandlerError, CodeHandlerCrashed, ""},
		{"invalid beats result", state{result: okResult, failure: invalid}, true, exit0, VerdictHandlerError, CodeInvalidMessage, ""},
		{"invalid then killed", state{failure: invalid}, false, killed, VerdictHandlerError, CodeInvalidMessage, ""},
		{"handshake timeout", state{failure: &ErrorInfo{Code: CodeHandshakeTimeout}}, true, killed, VerdictHandlerError, CodeHandshakeTimeout, ""},
		{"file handler exit 0 no result", state{ready: true}, true, exit0, VerdictHandlerError, CodeNoResult, ""},
		{"command exit 0 no result", state{}, false, exit0, VerdictOK, "", ""},
		{"no result exit 2", state{}, true, exit2, VerdictExit, "", ""},
		{"no result killed", state{}, true, killed, VerdictExit, "", ""},
		{"command no result signal", state{}, false, segv, VerdictExit, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := judge(&tt.st, tt.requireResult, tt.exit)
			if o.Verdict != tt.verdict {
				t.Fatalf("verdict %q, want %q (err %+v)", o.Verdict, tt.verdict, o.Err)
			}
			code := ""
			if o.Err != nil {
				code = o.Err.Code
			}
			if code != tt.code {
				t.Fatalf("code %q, want %q", code, tt.code)
			}
			if string(o.Data) != tt.data {
				t.Fatalf("data %s, want %s", o.Data, tt.data)
			}
		})
	}
}
