package sandbox_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/kb-labs/sandbox"
)

// New validates a Config once; every bad value is a *ConfigError naming the
// field and the accepted form.
func ExampleNew() {
	_, err := sandbox.New(sandbox.Config{Execution: sandbox.Execution{Memory: 1 * sandbox.KiB}})
	var ce *sandbox.ConfigError
	if errors.As(err, &ce) {
		fmt.Println(ce.Field+":", ce.Want)
	}

	r, err := sandbox.New(sandbox.Config{
		Mode:      sandbox.InProcess,
		Execution: sandbox.Execution{Timeout: sandbox.Duration(2 * time.Second)},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	cfg := r.Config() // zero values replaced by the documented defaults
	fmt.Println("timeout", cfg.Execution.Timeout, "grace", cfg.Execution.Grace, "log buffer", cfg.Monitoring.LogBufferSize)
	// Output:
	// execution.memory: want at least 4MiB
	// timeout 2s grace 5s log buffer 1MiB
}

// Run executes a handler; every outcome of a run is a Result, and
// Result.Err gives an error that works with errors.Is.
func ExampleRunner_Run() {
	completed := make(chan sandbox.Status, 2)
	r, err := sandbox.New(sandbox.Config{
		Mode:      sandbox.InProcess,
		Execution: sandbox.Execution{Timeout: sandbox.Duration(100 * time.Millisecond)},
		Observers: []sandbox.Observer{{
			// Observers run on their own goroutine.
			OnComplete: func(res *sandbox.Result) { completed <- res.Status },
		}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()

	greet := sandbox.GoFunc(func(ctx context.Context, input any, h *sandbox.HandlerContext) (any, error) {
		h.Log("info", "greeting", nil)
		return map[string]string{"greeting": "hello, " + input.(string)}, nil
	})
	res, err := r.Run(context.Background(), greet, "world", &sandbox.ExecutionContext{RequestID: "req-1"})
	if err != nil {
		log.Fatal(err) // misuse only: a bad handler, a closed Runner
	}
	fmt.Println(res.RequestID, res.Status, string(res.Data), res.Logs[0].Message)
	fmt.Println("observer:", <-completed)

	slow := sandbox.GoFunc(func(ctx context.Context, _ any, _ *sandbox.HandlerContext) (any, error) {
		<-ctx.Done() // honour the context: the timeout ends it
		return nil, ctx.Err()
	})
	res, _ = r.Run(context.Background(), slow, nil, nil)
	fmt.Println(res.Status, res.Error.Code, errors.Is(res.Err(), context.DeadlineExceeded), res.ExitStatus())
	fmt.Println("observer:", <-completed)
	// Output:
	// req-1 ok {"greeting":"hello, world"} greeting
	// observer: ok
	// timeout TIMEOUT true 124
	// observer: timeout
}

// A command runs in a fresh isolated process tree (subprocess mode, the
// default: Linux, with user namespaces). Not run as a test: it needs the
// kernel features `sandbox doctor` checks.
func Example_command() {
	r, err := sandbox.New(sandbox.Config{
		Execution:   sandbox.Execution{Timeout: sandbox.Duration(5 * time.Second)},
		Permissions: sandbox.Permissions{Env: sandbox.EnvPolicy{Set: map[string]string{"GREETING": "hello"}}},
	})
	if err != nil {
		log.Fatal(err) // a bad value, or a protection this host cannot enforce
	}
	defer r.Close()
	res, err := r.Run(context.Background(), sandbox.Command("sh", "-c", "echo $GREETING; id -u"), nil, nil)
	if err != nil {
		log.Fatal(err)
	}
	os.Stdout.Write(res.Stdout)
	if err := res.Err(); err != nil {
		fmt.Println("run failed:", err, "- exit status", res.ExitStatus())
	}
	// Output:
	// hello
	// 1000
}
