// Command alternate runs several commands in turn, many rounds, and prints
// each one's p50 and p99 wall time and its mean CPU (user+sys of the
// children, in cores-ms). The order rotates every round so that no command
// always runs first after another; interleaving puts every command under the
// same load, which back-to-back blocks (hyperfine's default) do not.
//
//	go run ./bench/alternate -n 300 -- ./empty --- ./sandbox version
//
// Commands are separated by a lone "---"; a command's name is its argv
// joined by spaces, or NAME= before its first word (-- exec=/bin/true --- ...).
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"
)

type subject struct {
	name string
	argv []string
	wall []time.Duration
	cpu  time.Duration
	fail int
	err  string
}

func main() {
	n := flag.Int("n", 200, "rounds (each runs every command once)")
	warm := flag.Int("warmup", 5, "unmeasured rounds first (page cache, lazy binding)")
	flag.Parse()
	subs := subjects(flag.Args())
	if len(subs) == 0 {
		fmt.Fprintln(os.Stderr, "usage: alternate [-n N] -- CMD [ARG...] [--- CMD [ARG...]]...")
		os.Exit(2)
	}
	devnull, _ := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	run := func(s *subject, record bool) {
		cmd := exec.Command(s.argv[0], s.argv[1:]...)
		cmd.Stdout, cmd.Stderr = devnull, devnull
		t0 := time.Now()
		err := cmd.Run()
		d := time.Since(t0)
		if !record {
			return
		}
		s.wall = append(s.wall, d)
		if err != nil {
			s.fail++
			if s.err == "" {
				s.err = err.Error()
			}
		}
		// The child's own rusage covers the descendants it waited for.
		if cmd.ProcessState == nil {
			return
		}
		if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
			s.cpu += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		}
	}
	for i := 0; i < *warm; i++ {
		for _, s := range subs {
			run(s, false)
		}
	}
	for i := 0; i < *n; i++ {
		for j := range subs {
			run(subs[(i+j)%len(subs)], true)
		}
	}
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	fmt.Printf("%d alternated rounds\n%-40s %8s %8s %9s %8s\n", *n, "command", "p50 ms", "p99 ms", "cores-ms", "vs 1st")
	var base float64
	for i, s := range subs {
		slices.Sort(s.wall)
		p50 := ms(s.wall[(len(s.wall)-1)/2])
		p99 := ms(s.wall[int(0.99*float64(len(s.wall)-1))])
		if i == 0 {
			base = p50
		}
		fmt.Printf("%-40s %8.3f %8.3f %9.3f %7.2fx", s.name, p50, p99, ms(s.cpu)/float64(len(s.wall)), p50/base)
		if s.fail > 0 {
			fmt.Printf("  (%d failed: %s)", s.fail, s.err)
		}
		fmt.Println()
	}
}

// subjects splits args at each lone "---" into commands; NAME=PROG as a
// command's first word names it NAME (a NAME without a slash, so that a path
// with "=" in it still runs).
func subjects(args []string) []*subject {
	var subs []*subject
	cur := []string{}
	flush := func() {
		if len(cur) == 0 {
			return
		}
		s := &subject{argv: cur, name: strings.Join(cur, " ")}
		if name, prog, ok := strings.Cut(cur[0], "="); ok && name != "" && prog != "" && !strings.Contains(name, "/") {
			s.name, s.argv = name, append([]string{prog}, cur[1:]...)
		}
		subs = append(subs, s)
		cur = []string{}
	}
	for _, a := range args {
		if a == "---" {
			flush()
			continue
		}
		cur = append(cur, a)
	}
	flush()
	return subs
}
