package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kb-labs/sandbox"
)

// benchStats is one mode's numbers (the --json shape of `sandbox bench`,
// docs/cli.md).
type benchStats struct {
	P50Ms      float64 `json:"p50Ms"`
	P99Ms      float64 `json:"p99Ms"`
	RunsPerSec float64 `json:"runsPerSec"`
	Failed     int     `json:"failed,omitempty"`
	// FirstError is the first failure, so that a failed run is never
	// only a number.
	FirstError string `json:"firstError,omitempty"`
}

// benchCmd runs COMMAND N times as baseline (plain os/exec), cold (a fresh
// sandbox per run) and pooled (from the warm pool), and reports latency and
// throughput for each.
func benchCmd(env *Env, args []string) int {
	p := newParser("bench")
	n := p.fs.Int("n", 200, "runs per mode")
	conc := p.fs.Int("concurrency", 1, "runs in flight at once")
	asJSON := p.fs.Bool("json", false, `print {"baseline":{...},"cold":{...},"pooled":{...}}`)
	if err := p.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.usage(env.Stdout, "sandbox bench [--n N] [--concurrency C] [--json] [-- COMMAND [ARG...]]")
			return 0
		}
		fmt.Fprintf(env.Stderr, "sandbox bench: %v\n", err)
		return exitUsage
	}
	if *n < 1 || *n > 1_000_000 {
		fmt.Fprintf(env.Stderr, "sandbox bench: --n: want a number of runs between 1 and 1000000; got %d\n", *n)
		return exitUsage
	}
	if *conc < 1 || *conc > 256 {
		fmt.Fprintf(env.Stderr, "sandbox bench: --concurrency: want between 1 and 256; got %d\n", *conc)
		return exitUsage
	}
	argv := p.fs.Args()
	if len(argv) == 0 {
		argv = []string{"/bin/true"}
	}
	hostPath, err := exec.LookPath(argv[0])
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox bench: %s: %v\n", argv[0], err)
		return exitUsage
	}
	progress := newProgress(env.Stderr, 3**n)

	results := map[string]benchStats{}
	results["baseline"] = measure(*n, *conc, progress, func() error {
		cmd := exec.Command(hostPath, argv[1:]...)
		return cmd.Run()
	})
	for _, mode := range []struct {
		name string
		pool int
	}{{"cold", 0}, {"pooled", 2 * *conc}} {
		r, err := sandbox.New(sandbox.Config{Pool: sandbox.PoolConfig{Size: mode.pool}})
		if err != nil {
			progress.done()
			fmt.Fprintf(env.Stderr, "sandbox bench: %v\n", oneLine(err))
			return exitUsage
		}
		if mode.pool > 0 {
			waitDepth(r, mode.pool)
		}
		results[mode.name] = measure(*n, *conc, progress, func() error {
			res, err := r.Run(context.Background(), sandbox.Command(argv...), nil, nil)
			if err != nil {
				return err
			}
			return res.Err()
		})
		r.Close()
	}
	progress.done()

	if *asJSON {
		b, _ := json.Marshal(results)
		fmt.Fprintf(env.Stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintf(env.Stdout, "%d runs of %v, concurrency %d\n", *n, argv, *conc)
	fmt.Fprintf(env.Stdout, "%-9s %9s %9s %10s %9s\n", "mode", "p50 ms", "p99 ms", "runs/s", "vs exec")
	base := results["baseline"].P50Ms
	for _, name := range []string{"baseline", "cold", "pooled"} {
		s := results[name]
		ratio := ""
		if base > 0 {
			ratio = strconv.FormatFloat(s.P50Ms/base, 'f', 2, 64) + "x"
		}
		fmt.Fprintf(env.Stdout, "%-9s %9.3f %9.3f %10.1f %9s", name, s.P50Ms, s.P99Ms, s.RunsPerSec, ratio)
		if s.Failed > 0 {
			fmt.Fprintf(env.Stdout, "  (%d failed)", s.Failed)
		}
		fmt.Fprintln(env.Stdout)
	}
	for _, name := range []string{"baseline", "cold", "pooled"} {
		if s := results[name]; s.Failed > 0 {
			fmt.Fprintf(env.Stderr, "sandbox bench: %s: %d of %d runs failed; the first: %s\n", name, s.Failed, *n, s.FirstError)
		}
	}
	return 0
}

func waitDepth(r *sandbox.Runner, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for r.PoolDepth() < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

// measure runs f n times, conc at a time.
func measure(n, conc int, pr *progress, f func() error) benchStats {
	lat := make([]time.Duration, n)
	var next, failed atomic.Int64
	var firstErr sync.Once
	var first string
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				t0 := time.Now()
				if err := f(); err != nil {
					failed.Add(1)
					firstErr.Do(func() { first = oneLine(err) })
				}
				lat[i] = time.Since(t0)
				pr.step()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(n-1))].Microseconds()) / 1000 }
	return benchStats{P50Ms: q(0.50), P99Ms: q(0.99), RunsPerSec: float64(n) / elapsed.Seconds(), Failed: int(failed.Load()), FirstError: first}
}

// progress draws a bar on a terminal, and nothing otherwise.
type progress struct {
	w     io.Writer
	total int
	n     atomic.Int64
	tty   bool
	mu    sync.Mutex
	last  time.Time
}

func newProgress(w io.Writer, total int) *progress {
	p := &progress{w: w, total: total}
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			p.tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	return p
}

func (p *progress) step() {
	done := p.n.Add(1)
	if !p.tty {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 50*time.Millisecond && int(done) != p.total {
		return
	}
	p.last = time.Now()
	const width = 40
	filled := int(done) * width / p.total
	bar := make([]byte, width)
	for i := range bar {
		bar[i] = '-'
		if i < filled {
			bar[i] = '#'
		}
	}
	fmt.Fprintf(p.w, "\r[%s] %d/%d", bar, done, p.total)
}

func (p *progress) done() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}
