package wasm

import (
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// reportPercentiles reports the p50 and p99 of the measured durations in ms.
func reportPercentiles(b *testing.B, d []time.Duration) {
	b.Helper()
	if len(d) == 0 {
		return
	}
	slices.Sort(d)
	ms := func(q float64) float64 {
		return float64(d[min(len(d)-1, int(q*float64(len(d))))]) / float64(time.Millisecond)
	}
	b.ReportMetric(ms(0.50), "p50-ms")
	b.ReportMetric(ms(0.99), "p99-ms")
}

// benchRuns measures instantiate-and-run of spec on a warm Engine.
func benchRuns(b *testing.B, spec Spec) {
	e := newEngine(b, Config{})
	spec.Stdout, spec.Stderr = io.Discard, io.Discard
	if out, err := e.Run(context.Background(), spec); err != nil || !out.Exited {
		b.Fatalf("warm-up: err %v outcome %+v", err, out)
	}
	d := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for b.Loop() {
		start := time.Now()
		out, err := e.Run(context.Background(), spec)
		d = append(d, time.Since(start))
		if err != nil || !out.Exited || !out.CacheHit {
			b.Fatalf("err %v outcome %+v", err, out)
		}
	}
	reportPercentiles(b, d)
}

func BenchmarkRunTinyWarm(b *testing.B) {
	benchRuns(b, Spec{Bytes: tinyModule(bodyNop, 1)})
}

func BenchmarkRunHelloWarm(b *testing.B) {
	benchRuns(b, Spec{Path: guest("hello"), Args: []string{"hello"}})
}

// BenchmarkRunHelloCold compiles on every run (a fresh Engine, no cache
// directory): what the warm cache saves.
func BenchmarkRunHelloCold(b *testing.B) {
	bin, err := os.ReadFile(guest("hello"))
	if err != nil {
		b.Fatal(err)
	}
	var d, compile []time.Duration
	for b.Loop() {
		e, err := NewEngine(Config{})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		out, err := e.Run(context.Background(), Spec{Bytes: bin, Stdout: io.Discard})
		d = append(d, time.Since(start))
		compile = append(compile, out.CompileTime)
		if err != nil || !out.Exited || out.CacheHit {
			b.Fatalf("err %v outcome %+v", err, out)
		}
		_ = e.Close()
	}
	slices.Sort(compile)
	b.ReportMetric(float64(compile[len(compile)/2])/float64(time.Millisecond), "compile-p50-ms")
	reportPercentiles(b, d)
}

// BenchmarkBaselineExecHello is the baseline: the same program built for the
// host, started with os/exec.
func BenchmarkBaselineExecHello(b *testing.B) {
	var d []time.Duration
	for b.Loop() {
		start := time.Now()
		if err := exec.Command(filepath.Join(modDir, "hello-native")).Run(); err != nil {
			b.Fatal(err)
		}
		d = append(d, time.Since(start))
	}
	reportPercentiles(b, d)
}
