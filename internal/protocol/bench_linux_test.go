package protocol

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// BenchmarkRoundTrip measures a whole bootstrap run of a synchronous
// handler — start the interpreter, ready, run, result, exit — beside the
// interpreter's bare start-up as baselines (`node -e 0` / `python3 -c 0`,
// and running an empty file). Reports p50/p99.
func BenchmarkRoundTrip(b *testing.B) {
	root, boot := plugin(b)
	msg := RunMessage{
		Handler: HandlerRef{File: "handler", Export: "bench"},
		Input:   json.RawMessage(`{"a":[1,2,3]}`),
		Context: json.RawMessage(`{"requestId":"bench"}`),
	}
	for _, runtime := range []string{"node", "python"} {
		argv0, flag, empty := "node", "-e", "empty.mjs"
		if runtime == "python" {
			argv0, flag, empty = "python3", "-c", "empty.py"
		}
		for name, bare := range map[string][]string{
			"baseline-eval":  {argv0, flag, "0"},
			"baseline-empty": {argv0, filepath.Join(root, empty)},
		} {
			b.Run(runtime+"/"+name, func(b *testing.B) {
				interpreter(b, runtime, boot)
				measure(b, func() {
					cmd := exec.Command(bare[0], bare[1:]...)
					cmd.Env = baseEnv()
					if err := cmd.Run(); err != nil {
						b.Fatal(err)
					}
				})
			})
		}
		b.Run(runtime+"/bootstrap", func(b *testing.B) {
			argv := interpreter(b, runtime, boot)
			measure(b, func() {
				r := startRun(b, Options{RequireReady: true}, []string{"SANDBOX_PLUGIN_ROOT=" + root}, argv...)
				if err := r.start(msg); err != nil {
					b.Fatal(err)
				}
				if o := r.wait(); o.Verdict != VerdictOK {
					b.Fatalf("verdict %s %+v", o.Verdict, o.Err)
				}
			})
		})
	}
}

func measure(b *testing.B, f func()) {
	var ds []time.Duration
	for b.Loop() {
		begin := time.Now()
		f()
		ds = append(ds, time.Since(begin))
	}
	slices.Sort(ds)
	ms := func(q float64) float64 {
		return float64(ds[int(q*float64(len(ds)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(ms(0.5), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}
