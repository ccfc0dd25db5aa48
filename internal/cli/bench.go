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
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kb-labs/sandbox"
)

// benchStats is one mode's numbers (the --json shape of `sandbox bench`,
// docs/cli.md).
type benchStats struct {
	P50Ms      float64 `json:"p50Ms"`
	P99Ms      float64 `json:"p99Ms"`
	RunsPerSec float64 `json:"runsPerSec"`
	// CoresMs is the mean CPU time (user+sys) of one run, of this process
	// and the children it reaped, at concurrency 1 (omitted otherwise: runs
	// in flight together cannot be told apart).
	CoresMs float64 `json:"coresMs,omitempty"`
	Failed  int     `json:"failed,omitempty"`
	// FirstError is the first failure, so that a failed run is never
	// only a number.
	FirstError string `json:"firstError,omitempty"`
}

// benchMode is one way of running the command.
type benchMode struct {
	name string
	run  func() error
	// lat and cpu are filled by the loop.
	lat []time.Duration
	cpu time.Duration
	bad atomic.Int64
	err sync.Once
	msg string
}

// benchModes are every mode, in the order of the table: the first four run
// alternated in one loop, pooled after them on its own.
var benchModes = []string{"baseline", "cold", "cli", "bwrap", "pooled"}

// benchCmd runs COMMAND N times in each mode — baseline (plain os/exec),
// cold (a fresh sandbox per run, the library), cli (`sandbox run` as a
// subprocess), bwrap (bubblewrap at comparable namespaces, when installed)
// and pooled (from the warm pool) — and reports latency, throughput and CPU
// for each.
func benchCmd(env *Env, args []string) int {
	p := newParser("bench")
	n := p.fs.Int("n", 200, "runs per mode")
	conc := p.fs.Int("concurrency", 1, "runs in flight at once")
	modesFlag := p.fs.String("modes", strings.Join(benchModes, ","), "modes to measure, comma-separated")
	asJSON := p.fs.Bool("json", false, `print {"baseline":{...},"cold":{...},...}`)
	if err := p.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.usage(env.Stdout, "sandbox bench [--n N] [--concurrency C] [--modes baseline,cold,cli,bwrap,pooled] [--json] [-- COMMAND [ARG...]]")
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
	want := map[string]bool{}
	for _, m := range strings.Split(*modesFlag, ",") {
		if m = strings.TrimSpace(m); !slices.Contains(benchModes, m) {
			fmt.Fprintf(env.Stderr, "sandbox bench: --modes: unknown mode %q; accepted: %s\n", m, strings.Join(benchModes, ", "))
			return exitUsage
		}
		want[m] = true
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

	var loop []*benchMode
	skipped := map[string]string{}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if want["baseline"] {
		loop = append(loop, &benchMode{name: "baseline", run: func() error {
			return exec.Command(hostPath, argv[1:]...).Run()
		}})
	}
	if want["cold"] {
		r, err := sandbox.New(sandbox.Config{})
		if err != nil {
			fmt.Fprintf(env.Stderr, "sandbox bench: %v\n", oneLine(err))
			return exitUsage
		}
		closers = append(closers, func() { r.Close() })
		loop = append(loop, &benchMode{name: "cold", run: func() error {
			res, err := r.Run(context.Background(), sandbox.Command(argv...), nil, nil)
			if err != nil {
				return err
			}
			return res.Err()
		}})
	}
	if want["cli"] {
		if self, err := os.Executable(); err != nil {
			skipped["cli"] = "this executable cannot be found: " + oneLine(err)
		} else {
			loop = append(loop, &benchMode{name: "cli", run: func() error {
				// argv[0] as invoked: a multi-call binary (the tests')
				// dispatches on it.
				cmd := &exec.Cmd{Path: self, Args: append([]string{os.Args[0], "run", "--"}, argv...)}
				return cmd.Run()
			}})
		}
	}
	if want["bwrap"] {
		if bw, err := exec.LookPath("bwrap"); err != nil {
			skipped["bwrap"] = "bwrap (bubblewrap) is not on $PATH"
		} else {
			loop = append(loop, &benchMode{name: "bwrap", run: func() error {
				return exec.Command(bw, append([]string{"--unshare-all", "--ro-bind", "/", "/"}, argv...)...).Run()
			}})
		}
	}
	var pooled *benchMode
	if want["pooled"] {
		r, err := sandbox.New(sandbox.Config{Pool: sandbox.PoolConfig{Size: 2 * *conc}})
		if err != nil {
			fmt.Fprintf(env.Stderr, "sandbox bench: %v\n", oneLine(err))
			return exitUsage
		}
		closers = append(closers, func() { r.Close() })
		pooled = &benchMode{name: "pooled", run: func() error {
			res, err := r.Run(context.Background(), sandbox.Command(argv...), nil, nil)
			if err != nil {
				return err
			}
			return res.Err()
		}}
		// The pool refills in the background while it is measured: it runs
		// after the alternated loop, so that its refill loads no other mode.
		progress := newProgress(env.Stderr, (len(loop)+1)**n)
		alternate(loop, *n, *conc, progress)
		waitDepth(r, 2**conc)
		alternate([]*benchMode{pooled}, *n, *conc, progress)
		progress.done()
	} else {
		progress := newProgress(env.Stderr, len(loop)**n)
		alternate(loop, *n, *conc, progress)
		progress.done()
	}
	all := loop
	if pooled != nil {
		all = append(all, pooled)
	}
	results := map[string]benchStats{}
	for _, m := range all {
		results[m.name] = m.stats(*n, *conc)
	}

	if *asJSON {
		b, _ := json.Marshal(results)
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else {
		printBench(env.Stdout, results, skipped, argv, *n, *conc)
	}
	for _, name := range benchModes {
		if s, ok := results[name]; ok && s.Failed > 0 {
			fmt.Fprintf(env.Stderr, "sandbox bench: %s: %d of %d runs failed; the first: %s\n", name, s.Failed, *n, s.FirstError)
		}
		if why, ok := skipped[name]; ok && *asJSON {
			fmt.Fprintf(env.Stderr, "sandbox bench: %s skipped: %s\n", name, why)
		}
	}
	return 0
}

func printBench(w io.Writer, results map[string]benchStats, skipped map[string]string, argv []string, n, conc int) {
	fmt.Fprintf(w, "%d runs of %v per mode, concurrency %d", n, argv, conc)
	if len(results) > 1 {
		fmt.Fprint(w, "; modes but pooled alternated")
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "%-9s %9s %9s %10s %9s %9s\n", "mode", "p50 ms", "p99 ms", "runs/s", "cores-ms", "vs exec")
	base := results["baseline"].P50Ms
	for _, name := range benchModes {
		s, ok := results[name]
		if !ok {
			if why, ok := skipped[name]; ok {
				fmt.Fprintf(w, "%-9s skipped: %s\n", name, why)
			}
			continue
		}
		ratio, cpu := "", "-"
		if base > 0 {
			ratio = strconv.FormatFloat(s.P50Ms/base, 'f', 2, 64) + "x"
		}
		if s.CoresMs > 0 {
			cpu = strconv.FormatFloat(s.CoresMs, 'f', 3, 64)
		}
		fmt.Fprintf(w, "%-9s %9.3f %9.3f %10.1f %9s %9s", name, s.P50Ms, s.P99Ms, s.RunsPerSec, cpu, ratio)
		if s.Failed > 0 {
			fmt.Fprintf(w, "  (%d failed)", s.Failed)
		}
		fmt.Fprintln(w)
	}
}

func waitDepth(r *sandbox.Runner, n int) {
	deadline := time.Now().Add(30 * time.Second)
	for r.PoolDepth() < n && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
}

// alternate runs every mode n times, conc rounds at a time; a round runs each
// mode once, starting with a different one each round, so that all modes see
// the same load and none always follows another. At concurrency 1 each run's
// CPU is the change in this process's and its reaped children's rusage.
func alternate(modes []*benchMode, n, conc int, pr *progress) {
	if len(modes) == 0 {
		return
	}
	for _, m := range modes {
		m.lat = make([]time.Duration, n)
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				for j := range modes {
					m := modes[(i+j)%len(modes)]
					var c0 time.Duration
					if conc == 1 {
						c0 = cpuUsed()
					}
					t0 := time.Now()
					if err := m.run(); err != nil {
						m.bad.Add(1)
						m.err.Do(func() { m.msg = oneLine(err) })
					}
					m.lat[i] = time.Since(t0)
					if conc == 1 {
						m.cpu += cpuUsed() - c0
					}
					pr.step()
				}
			}
		}()
	}
	wg.Wait()
}

func (m *benchMode) stats(n, conc int) benchStats {
	lat := slices.Clone(m.lat)
	slices.Sort(lat)
	var sum time.Duration
	for _, d := range lat {
		sum += d
	}
	q := func(p float64) float64 { return float64(lat[int(p*float64(n-1))].Microseconds()) / 1000 }
	s := benchStats{P50Ms: q(0.50), P99Ms: q(0.99), Failed: int(m.bad.Load()), FirstError: m.msg}
	if sum > 0 {
		// Alternated, a mode has no wall-clock span of its own: its
		// throughput is the runs in flight over the mean latency.
		s.RunsPerSec = float64(conc) * float64(n) / sum.Seconds()
	}
	if conc == 1 {
		s.CoresMs = float64(m.cpu.Microseconds()) / 1000 / float64(n)
	}
	return s
}

// cpuUsed is the user+sys time of this process and of the children it has
// reaped.
func cpuUsed() time.Duration {
	var self, kids syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &self)
	_ = syscall.Getrusage(syscall.RUSAGE_CHILDREN, &kids)
	return time.Duration(self.Utime.Nano() + self.Stime.Nano() + kids.Utime.Nano() + kids.Stime.Nano())
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
