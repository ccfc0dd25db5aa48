package sandbox_test

import (
	"context"
	"os/exec"
	"slices"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
	"github.com/kb-labs/sandbox/internal/testenv"
)

// reportLatency reports p50 and p99 of the samples in milliseconds.
func reportLatency(b *testing.B, prefix string, samples []time.Duration) {
	if len(samples) == 0 {
		return
	}
	slices.Sort(samples)
	at := func(q float64) float64 {
		return float64(samples[int(q*float64(len(samples)-1))].Microseconds()) / 1000
	}
	b.ReportMetric(at(0.50), prefix+"p50-ms")
	b.ReportMetric(at(0.99), prefix+"p99-ms")
}

// BenchmarkStartTrue runs /bin/true in a fresh sandbox next to plain
// os/exec in the same benchmark, so the ratio is measured in one process.
func BenchmarkStartTrue(b *testing.B) {
	testenv.Require(b, "root", "userns")
	r, err := sandbox.New(sandbox.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	// Warm up: the sealed binary copy and cgroup detection happen once.
	r.Run(ctx, sandbox.Command("/bin/true"), nil, nil)
	compareWithExec(b, "sandbox-", func() { mustRunTrue(b, r) }, nil)
}

// compareWithExec times plain os/exec of /bin/true and run, alternated in
// one loop, and reports both and the ratio of their medians. between, if
// set, runs untimed before each iteration.
func compareWithExec(b *testing.B, prefix string, run func(), between func()) {
	var base, box []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if between != nil {
			b.StopTimer()
			between()
			b.StartTimer()
		}
		t0 := time.Now()
		if err := exec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
		base = append(base, time.Since(t0))
		t0 = time.Now()
		run()
		box = append(box, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, "exec-", base)
	reportLatency(b, prefix, box)
	slices.Sort(base)
	slices.Sort(box)
	b.ReportMetric(float64(box[len(box)/2])/float64(base[len(base)/2]), "ratio-p50")
}

func mustRunTrue(b *testing.B, r *sandbox.Runner) {
	res, err := r.Run(context.Background(), sandbox.Command("/bin/true"), nil, nil)
	if err != nil || !res.OK {
		b.Fatalf("run: %v %+v", err, res)
	}
}

// BenchmarkTimeoutPrecision measures how far past the deadline the kill of
// a busy program lands (grace ~0).
func BenchmarkTimeoutPrecision(b *testing.B) {
	testenv.Require(b, "root", "userns")
	const deadline = 100 * time.Millisecond
	r, err := sandbox.New(sandbox.Config{Execution: sandbox.Execution{
		Timeout: sandbox.Duration(deadline), Grace: sandbox.Duration(time.Nanosecond)}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var late []time.Duration
	for i := 0; i < b.N; i++ {
		start := time.Now()
		res, err := r.Run(context.Background(), sandbox.Command("sh", "-c", "while :; do :; done"), nil, nil)
		if err != nil || res.Status != sandbox.StatusTimeout {
			b.Fatalf("run: %v %+v", err, res)
		}
		late = append(late, time.Since(start)-deadline)
	}
	reportLatency(b, "past-deadline-", late)
}

// BenchmarkPooledTrue runs /bin/true from a pre-filled warm pool next to
// plain os/exec; the pool refills in the background between runs.
func BenchmarkPooledTrue(b *testing.B) {
	testenv.Require(b, "root", "userns")
	r, err := sandbox.New(sandbox.Config{Pool: sandbox.PoolConfig{Size: 4}})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	compareWithExec(b, "pooled-", func() { mustRunTrue(b, r) }, func() { waitPool(r, 4) })
}

func waitPool(r *sandbox.Runner, n int) {
	deadline := time.Now().Add(10 * time.Second)
	for r.PoolDepth() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
}

// BenchmarkHardening measures what the seccomp filter and Landlock cost: a
// syscall-heavy program (getpid and open/close in loops) and /bin/true
// start-up, each with both layers on and with both off, in one benchmark.
func BenchmarkHardening(b *testing.B) {
	testenv.Require(b, "root", "userns")
	const heavy = `import os
for _ in range(200000): os.getpid()
for _ in range(20000): os.close(os.open("/etc/hostname", os.O_RDONLY))`
	runners := map[string]*sandbox.Runner{}
	for name, on := range map[string]bool{"on": true, "off": false} {
		r, err := sandbox.New(sandbox.Config{Security: sandbox.Security{Seccomp: sandbox.Bool(on), Landlock: sandbox.Bool(on)}})
		if err != nil {
			b.Fatal(err)
		}
		defer r.Close()
		runners[name] = r
	}
	ctx := context.Background()
	lat := map[string][]time.Duration{}
	cpu := map[string][]time.Duration{}
	for i := 0; i < b.N; i++ {
		for _, name := range []string{"on", "off"} {
			t0 := time.Now()
			res, err := runners[name].Run(ctx, sandbox.Command("/bin/true"), nil, nil)
			if err != nil || !res.OK {
				b.Fatalf("true: %v %+v", err, res)
			}
			lat["true-"+name] = append(lat["true-"+name], time.Since(t0))
			res, err = runners[name].Run(ctx, sandbox.Command("python3", "-c", heavy), nil, nil)
			if err != nil || !res.OK {
				b.Fatalf("heavy: %v %+v", err, res)
			}
			cpu["syscalls-"+name] = append(cpu["syscalls-"+name], time.Duration(*res.Metrics.CPUMs*float64(time.Millisecond)))
		}
	}
	for _, k := range []string{"true-on", "true-off"} {
		reportLatency(b, k+"-", lat[k])
	}
	for _, k := range []string{"syscalls-on", "syscalls-off"} {
		reportLatency(b, k+"-cpu-", cpu[k])
	}
}
