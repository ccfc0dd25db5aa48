//go:build linux

package hostile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/kb-labs/sandbox"
)

// Output amplification: programs that write floods of tiny lines (blank,
// invalid UTF-8, empty protocol logs), blank lines on fd 3, and huge log
// metas. Each runs through the real CLI (`sandbox run --json`) in its own
// process, so that the supervisor's peak memory is the process's own
// (rusage maxrss) and the Result is exactly what the CLI prints. Whatever
// the program writes, the Result stays within a small multiple of the caps,
// the log holds a bounded number of entries, and the supervisor's memory
// grows by a bounded amount.

// The caps of these runs, small so that a flood is many times larger.
const (
	ampMaxOutput = 256 << 10
	ampLogBuffer = 64 << 10
)

// ampResultBound bounds the Result's JSON: each stream's capture as JSON
// (a newline is two bytes escaped; 4x covers the worse escapes of a short
// line), the log twice over (its JSON and the note), and slack for the
// rest of the Result.
func ampResultBound(maxOutput int) int { return 4*2*maxOutput + 2*ampLogBuffer + 64<<10 }

// ampEntryBound bounds the log's entries: a line costs at least ~100 bytes
// (its struct and JSON framing) whatever its message, plus the newest line
// and the note about dropped lines.
const ampEntryBound = ampLogBuffer/100 + 2

// ampRSSBound bounds the supervisor's peak memory over a trivial run's: the
// captures, ring and Result a few times over (JSON encoding, GC headroom),
// and slack for the runtime.
func ampRSSBound(maxOutput int) int64 { return 32<<20 + 8*int64(2*maxOutput+ampLogBuffer) }

var cliBin struct {
	once     sync.Once
	path     string
	baseline int64 // maxrss in bytes of `sandbox run -- true`
	err      error
}

// sandboxCLI builds cmd/sandbox once and measures a trivial run's peak RSS.
func sandboxCLI(c *cctx) (string, int64) {
	c.t.Helper()
	cliBin.once.Do(func() {
		dir, err := os.MkdirTemp("", "hostile-cli-")
		if err != nil {
			cliBin.err = err
			return
		}
		cliBin.path = filepath.Join(dir, "sandbox")
		build := exec.Command("go", "build", "-o", cliBin.path, "../../cmd/sandbox")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			cliBin.err = fmt.Errorf("build cmd/sandbox: %v\n%s", err, out)
			return
		}
		o, err := runCLI(c, ampMaxOutput, false, "true")
		if err == nil && o.res.Status != sandbox.StatusOK {
			err = fmt.Errorf("baseline run: %s %+v", o.res.Status, o.res.Error)
		}
		cliBin.baseline, cliBin.err = o.maxRSS, err
	})
	if cliBin.err != nil {
		c.t.Fatal(cliBin.err)
	}
	return cliBin.path, cliBin.baseline
}

type cliOutcome struct {
	res    *sandbox.Result
	json   int   // bytes of the Result's JSON
	maxRSS int64 // the CLI process's peak RSS, bytes
}

func runCLI(c *cctx, maxOutput int, protocol bool, argv ...string) (*cliOutcome, error) {
	cfg := fmt.Sprintf(`{"monitoring":{"logBufferSize":"%d"},"security":{"seccomp":true},"execution":{"timeout":"20s","grace":"1s"}}`, ampLogBuffer)
	cfgFile := filepath.Join(c.t.TempDir(), "config.json")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		return nil, err
	}
	args := []string{"run", "--json", "--config", cfgFile, "--max-output", fmt.Sprint(maxOutput)}
	if protocol {
		args = append(args, "--protocol")
	}
	args = append(append(args, "--"), argv...)
	if !c.noMark {
		args = append(args, c.mark)
	}
	// Started from a fresh, small process (spawnHelper): a child's maxrss
	// starts at its parent's peak RSS (vfork, then exec keeps the larger),
	// and this test process holds big Results.
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, _ := json.Marshal(append([]string{cliBin.path}, args...))
	outFile := filepath.Join(c.t.TempDir(), "stdout")
	var stderr bytes.Buffer
	cmd := exec.Command(exe, "-test.run=^TestAmpSpawnHelper$")
	cmd.Env = append(os.Environ(), spawnEnv+"="+string(spec), spawnOut+"="+outFile)
	cmd.Stderr = &stderr
	runMu.Lock()
	err = cmd.Run()
	runMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("spawn helper: %v: %s", err, clip(stderr.Bytes()))
	}
	_, rss, ok := strings.Cut(stderr.String(), spawnRSS+"=")
	if !ok {
		return nil, fmt.Errorf("spawn helper reported no maxrss: %s", clip(stderr.Bytes()))
	}
	stdout, err := os.ReadFile(outFile)
	if err != nil {
		return nil, err
	}
	o := &cliOutcome{json: len(bytes.TrimSpace(stdout)), res: &sandbox.Result{}}
	if o.maxRSS, err = strconv.ParseInt(strings.TrimSpace(rss), 10, 64); err != nil {
		return nil, fmt.Errorf("spawn helper: maxrss %q", rss)
	}
	if err := json.Unmarshal(stdout, o.res); err != nil {
		return nil, fmt.Errorf("the CLI printed no Result (%v); stderr: %s", err, clip(stderr.Bytes()))
	}
	c.t.Logf("%v: status %s (%+v), result %d bytes, %d log entries, maxrss %d KiB",
		argv[:min(len(argv), 2)], o.res.Status, o.res.Error, o.json, len(o.res.Logs), o.maxRSS>>10)
	return o, nil
}

const (
	spawnEnv = "HOSTILE_AMP_SPAWN" // JSON argv of the CLI run
	spawnOut = "HOSTILE_AMP_OUT"   // file for the CLI's stdout
	spawnRSS = "hostile-amp-maxrss"
)

// TestAmpSpawnHelper is not a test but the helper process of runCLI (it
// does nothing unless spawnEnv is set): it runs the CLI and reports the
// CLI's peak RSS in bytes on stderr. The CLI's exit status is not an error.
func TestAmpSpawnHelper(t *testing.T) {
	spec := os.Getenv(spawnEnv)
	if spec == "" {
		return
	}
	var argv []string
	if err := json.Unmarshal([]byte(spec), &argv); err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(os.Getenv(spawnOut))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = out, os.Stderr
	var ee *exec.ExitError
	if err := cmd.Run(); err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatal("no rusage")
	}
	fmt.Fprintf(os.Stderr, "\n%s=%d\n", spawnRSS, ru.Maxrss<<10)
}

// bounded checks the Result and the supervisor's memory against the caps.
func (o *cliOutcome) bounded(maxOutput int, baseline int64) error {
	return o.boundedLine(maxOutput, baseline, 0)
}

// boundedLine is bounded for a run that sends one protocol line of line
// bytes: the decoder holds a line up to protocol.maxMessageBytes (another
// cap) and parsing it copies it, so memory may grow by a few times that.
func (o *cliOutcome) boundedLine(maxOutput int, baseline int64, line int) error {
	var errs []error
	if b := ampResultBound(maxOutput); o.json > b {
		errs = append(errs, fmt.Errorf("HOST EFFECT: the Result is %d bytes of JSON, over %d (maxOutput %d, logBufferSize %d)",
			o.json, b, maxOutput, ampLogBuffer))
	}
	if n := len(o.res.Logs); n > ampEntryBound {
		errs = append(errs, fmt.Errorf("HOST EFFECT: the Result holds %d log entries, over %d for a %d-byte log", n, ampEntryBound, ampLogBuffer))
	}
	if g, b := o.maxRSS-baseline, ampRSSBound(maxOutput)+4*int64(line); g > b {
		errs = append(errs, fmt.Errorf("HOST EFFECT: the supervisor's peak RSS grew by %d MiB over a trivial run's, over %d MiB",
			g>>20, b>>20))
	}
	return errors.Join(errs...)
}

// droppedNote checks that the Result says how many log lines were evicted.
func droppedNote(o *cliOutcome) error {
	for _, l := range o.res.Logs {
		if l.Source == "sandbox" && strings.Contains(l.Message, "log lines were dropped") {
			return nil
		}
	}
	return fmt.Errorf("no sandbox note about dropped log lines among %d entries", len(o.res.Logs))
}

// metaMarker finds the handler log whose meta was replaced.
func metaMarker(o *cliOutcome) error {
	for _, l := range o.res.Logs {
		if l.Source == "handler" && l.Meta["_truncated"] != nil && len(l.Meta) == 1 {
			return nil
		}
	}
	return errors.New("no handler log with its oversized meta replaced by {\"_truncated\": N}")
}

// py is a python3 program for the flood cases.
func py(src string) []string { return []string{"python3", "-c", src} }

const (
	pyFlood  = "import os,sys\nb=%s*(1<<16)\nwhile True: os.write(%d,b)\n"
	pyResult = `os.write(3,b'{"type":"result","ok":true}\n')` + "\n"
)

func amplifyCases() []hcase {
	cli := func(c *cctx, maxOutput int, protocol bool, argv ...string) (*cliOutcome, int64) {
		_, base := sandboxCLI(c)
		o, err := runCLI(c, maxOutput, protocol, argv...)
		if err != nil {
			c.t.Fatal(err)
		}
		return o, base
	}
	outputLimit := func(o *cliOutcome) error {
		if o.res.Status != sandbox.StatusOutputLimit {
			return fmt.Errorf("status %s (%+v), want output_limit", o.res.Status, o.res.Error)
		}
		return nil
	}
	return []hcase{
		{name: "stdout-blank-lines", fn: func(c *cctx) error {
			o, base := cli(c, ampMaxOutput, false, py(fmt.Sprintf(pyFlood, `b"\n"`, 1))...)
			return all(outputLimit(o), o.bounded(ampMaxOutput, base), droppedNote(o))
		}},
		{name: "stderr-blank-lines", fn: func(c *cctx) error {
			o, base := cli(c, ampMaxOutput, false, py(fmt.Sprintf(pyFlood, `b"\n"`, 2))...)
			return all(outputLimit(o), o.bounded(ampMaxOutput, base), droppedNote(o))
		}},
		{name: "both-streams-blank-under-the-cap", fn: func(c *cctx) error {
			n := ampMaxOutput - 1
			o, base := cli(c, ampMaxOutput, false, py(fmt.Sprintf("import os\nos.write(1,b'\\n'*%d)\nos.write(2,b'\\n'*%d)\n", n, n))...)
			return all(status(&outcome{res: o.res}, sandbox.StatusOK), o.bounded(ampMaxOutput, base), droppedNote(o))
		}},
		{name: "stdout-invalid-utf8-lines", fn: func(c *cctx) error {
			o, base := cli(c, ampMaxOutput, false, py(fmt.Sprintf(pyFlood, `b"\xff\n"`, 1))...)
			return all(outputLimit(o), o.bounded(ampMaxOutput, base), droppedNote(o))
		}},
		{name: "fd3-blank-lines-then-result", fn: func(c *cctx) error {
			// 200MiB of newlines on fd 3 with a 1MiB cap, then a result.
			const max = 1 << 20
			src := "import os\nb=b'\\n'*(1<<20)\nfor _ in range(200): os.write(3,b)\n" + pyResult
			o, base := cli(c, max, true, py(src)...)
			return all(outputLimit(o), o.bounded(max, base))
		}},
		{name: "fd3-blank-flood", fn: func(c *cctx) error {
			// Never a message: the cap must still end it, long before the timeout.
			o, base := cli(c, ampMaxOutput, true, py(fmt.Sprintf(pyFlood, `b" \r\n"`, 3))...)
			return all(outputLimit(o), o.bounded(ampMaxOutput, base))
		}},
		{name: "fd3-empty-log-flood", fn: func(c *cctx) error {
			line := `b'{"type":"log","level":"info","message":""}\n'`
			o, base := cli(c, ampMaxOutput, true, py(fmt.Sprintf("import os\nb=%s*1000\nwhile True: os.write(3,b)\n", line))...)
			return all(outputLimit(o), o.bounded(ampMaxOutput, base), droppedNote(o))
		}},
		{name: "fd3-huge-meta-past-the-cap", fn: func(c *cctx) error {
			// One 12MiB meta of small values (many times that decoded) with a
			// 1MiB cap: it passes the cap and must not reach the log.
			const max, line = 1 << 20, 12 << 20
			src := "import os\nm=b'{\"a\":['+b'0,'*(6<<20)+b'0]}'\n" +
				"os.write(3,b'{\"type\":\"log\",\"level\":\"info\",\"message\":\"m\",\"meta\":'+m+b'}\\n')\n" + pyResult
			o, base := cli(c, max, true, py(src)...)
			return all(outputLimit(o), o.boundedLine(max, base, line))
		}},
		{name: "fd3-large-meta-within-the-cap", fn: func(c *cctx) error {
			// A 200KiB meta within the cap is kept as a marker, not decoded.
			const max = 1 << 20
			src := "import os\nm=b'{\"a\":\"'+b'x'*(200<<10)+b'\"}'\n" +
				"os.write(3,b'{\"type\":\"log\",\"level\":\"info\",\"message\":\"m\",\"meta\":'+m+b'}\\n')\n" + pyResult
			o, base := cli(c, max, true, py(src)...)
			return all(status(&outcome{res: o.res}, sandbox.StatusOK), o.bounded(max, base), metaMarker(o))
		}},
	}
}

// TestAmplification runs the output amplification cases.
func TestAmplification(t *testing.T) { runCases(t, amplifyCases()) }
