package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/kb-labs/sandbox"
)

const runSynopsis = `sandbox run [flags] -- COMMAND [ARG...]
       sandbox run [flags] --handler FILE[#EXPORT] --runtime node|python [--plugin-root DIR] [--context FILE]
       sandbox run [flags] --wasm MODULE.wasm [-- ARG...]`

// runFlags are the flags of `sandbox run`; each overrides the config file.
type runFlags struct {
	cfg        sandbox.Config
	configFile string
	env        []string
	ro, rw     []sandbox.Mount
	tmpfs      []sandbox.TmpfsMount
	workdir    string
	outdir     string
	network    string
	hostname   string
	input      string
	context    string
	handler    string
	runtime    string
	pluginRoot string
	wasm       string
	protocol   bool
	json       bool
	bestEffort bool
	set        map[string]bool
}

func parseRunFlags(env *Env, args []string) (*runFlags, []string, error) {
	f := &runFlags{set: map[string]bool{}}
	p := newParser("run")
	e := &f.cfg.Execution
	p.duration("timeout", "wall-clock limit (default 30s)", &e.Timeout)
	p.duration("grace", "time between SIGTERM and SIGKILL (default 5s)", &e.Grace)
	p.duration("cpu-time", "CPU-time limit of all processes together (default unlimited)", &e.CPUTime)
	p.add("cpus", "CPU quota in cores, e.g. 0.5 (default unlimited)", func(s string) error {
		v, err := sandbox.ParseCPUs(s)
		if err == nil && v != 0 {
			e.CPUs = v
		}
		return err
	})
	p.size("memory", "memory limit of the whole run, swap included (default 512MiB)", &e.Memory)
	p.count("pids", "processes + threads (default 128)", &e.Pids)
	p.size("max-output", "per captured stream (default 1MiB)", &e.MaxOutput)
	p.size("max-file-size", "largest file the run may write (default 64MiB)", &e.MaxFileSize)
	p.count("max-open-files", "open files (default 256)", &e.MaxOpenFiles)
	p.list("env", "NAME, 'PREFIX_*' or NAME=VALUE (repeatable)", func(s string) error {
		name, _, hasValue := strings.Cut(s, "=")
		pattern := strings.TrimSuffix(name, "*")
		if name == "" || (hasValue && strings.HasSuffix(name, "*")) || !sandbox.ValidEnvName(pattern) {
			return errors.New("want NAME, PREFIX_* or NAME=VALUE with a variable name of A-Z, a-z, 0-9 and _")
		}
		f.env = append(f.env, s)
		return nil
	})
	mountFlag := func(dst *[]sandbox.Mount) func(string) error {
		return func(s string) error {
			src, dstPath, _ := strings.Cut(s, ":")
			if src == "" {
				return errors.New("want SRC[:DST] with a host path SRC")
			}
			abs, err := absPath(env, src)
			if err != nil {
				return err
			}
			if dstPath != "" && !strings.HasPrefix(dstPath, "/") {
				return errors.New("want SRC[:DST] with an absolute DST inside the sandbox")
			}
			*dst = append(*dst, sandbox.Mount{Source: abs, Target: dstPath})
			return nil
		}
	}
	p.list("ro", "SRC[:DST] read-only bind (repeatable)", mountFlag(&f.ro))
	p.list("rw", "SRC[:DST] read-write bind (repeatable)", mountFlag(&f.rw))
	p.list("tmpfs", "DST[:SIZE] tmpfs (repeatable)", func(s string) error {
		dst, size, _ := strings.Cut(s, ":")
		if !strings.HasPrefix(dst, "/") {
			return errors.New("want DST[:SIZE] with an absolute DST, e.g. /scratch:64MiB")
		}
		t := sandbox.TmpfsMount{Target: dst}
		if size != "" {
			v, err := sandbox.ParseSize(size)
			if err != nil {
				return err
			}
			t.Size = v
		}
		f.tmpfs = append(f.tmpfs, t)
		return nil
	})
	dirFlag := func(dst *string) func(string) error {
		return func(s string) error {
			abs, err := absPath(env, s)
			if err != nil {
				return err
			}
			st, err := os.Stat(abs)
			if err != nil || !st.IsDir() {
				return errors.New("want an existing host directory")
			}
			*dst = abs
			return nil
		}
	}
	p.add("workdir", "host directory mounted read-write at /workspace (default: a fresh tmpfs)", dirFlag(&f.workdir))
	p.add("outdir", "host directory mounted read-write at /out", dirFlag(&f.outdir))
	p.add("plugin-root", "plugin directory, read-only at /plugin (file handlers)", dirFlag(&f.pluginRoot))
	p.add("net", "none, loopback or host (default none)", func(s string) error {
		switch s {
		case "none", "loopback", "host":
			f.network = s
			return nil
		}
		return errors.New(`want "none", "loopback" or "host"`)
	})
	p.fs.StringVar(&f.hostname, "hostname", "", "hostname inside (default sandbox)")
	p.fs.StringVar(&f.input, "input", "", "input file (JSON for handlers, stdin bytes for commands), - for stdin")
	p.fs.StringVar(&f.context, "context", "", "execution context (JSON) for handlers")
	p.fs.StringVar(&f.handler, "handler", "", "FILE[#EXPORT] handler under the plugin root")
	p.fs.StringVar(&f.runtime, "runtime", "", "node or python (with --handler)")
	p.fs.StringVar(&f.wasm, "wasm", "", "WASI module to run in-process")
	p.fs.BoolVar(&f.protocol, "protocol", false, "offer the handler protocol to the command on fd 3")
	p.fs.BoolVar(&f.json, "json", false, "print the Result as one JSON object instead of streaming output")
	p.fs.BoolVar(&f.bestEffort, "best-effort", false, "run where the host lacks a requested protection (listed in isolation.degraded)")
	p.fs.StringVar(&f.configFile, "config", "", "YAML or JSON config file; flags override it")
	if err := p.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.usage(env.Stdout, runSynopsis)
		}
		return nil, nil, err
	}
	p.fs.Visit(func(fl *flag.Flag) { f.set[fl.Name] = true })
	return f, p.fs.Args(), nil
}

func absPath(env *Env, p string) (string, error) {
	if filepath.IsAbs(p) {
		return filepath.Clean(p), nil
	}
	wd, err := env.Getwd()
	if err != nil {
		return "", fmt.Errorf("want an absolute path (cannot resolve %q: %v)", p, err)
	}
	return filepath.Join(wd, p), nil
}

// config merges the config file and the flags.
func (f *runFlags) config() (sandbox.Config, error) {
	var cfg sandbox.Config
	if f.configFile != "" {
		var err error
		if cfg, err = sandbox.LoadConfig(f.configFile); err != nil {
			return cfg, err
		}
	}
	e, fe := &cfg.Execution, f.cfg.Execution
	for name, apply := range map[string]func(){
		"timeout": func() { e.Timeout = fe.Timeout }, "grace": func() { e.Grace = fe.Grace },
		"cpu-time": func() { e.CPUTime = fe.CPUTime }, "cpus": func() { e.CPUs = fe.CPUs },
		"memory": func() { e.Memory = fe.Memory }, "pids": func() { e.Pids = fe.Pids },
		"max-output": func() { e.MaxOutput = fe.MaxOutput }, "max-file-size": func() { e.MaxFileSize = fe.MaxFileSize },
		"max-open-files": func() { e.MaxOpenFiles = fe.MaxOpenFiles },
	} {
		if f.set[name] {
			apply()
		}
	}
	perm := &cfg.Permissions
	for _, kv := range f.env {
		if name, val, ok := strings.Cut(kv, "="); ok {
			if perm.Env.Set == nil {
				perm.Env.Set = map[string]string{}
			}
			perm.Env.Set[name] = val
		} else {
			perm.Env.Allow = append(perm.Env.Allow, kv)
		}
	}
	fs := &perm.Filesystem
	fs.ReadOnly = append(fs.ReadOnly, f.ro...)
	fs.ReadWrite = append(fs.ReadWrite, f.rw...)
	fs.Tmpfs = append(fs.Tmpfs, f.tmpfs...)
	if f.workdir != "" {
		fs.Workdir = f.workdir
	}
	if f.outdir != "" {
		fs.Outdir = f.outdir
	}
	if f.network != "" {
		perm.Network = sandbox.Network(f.network)
	}
	if f.hostname != "" {
		perm.Hostname = f.hostname
	}
	if f.bestEffort {
		cfg.BestEffort = true
	}
	if f.wasm != "" {
		cfg.Mode = sandbox.InProcess
	}
	return cfg, nil
}

func runCmd(env *Env, args []string) int {
	f, rest, err := parseRunFlags(env, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", err)
		return exitUsage
	}
	h, err := f.handlerOf(rest)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", err)
		return exitUsage
	}
	cfg, err := f.config()
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", err)
		return exitUsage
	}
	ec, err := f.execContext()
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", err)
		return exitUsage
	}
	input, err := f.inputOf(env, h)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", err)
		return exitUsage
	}
	r, err := sandbox.New(cfg)
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", oneLine(err))
		return exitUsage
	}
	defer r.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	defer stop()
	var res *sandbox.Result
	if f.json {
		res, err = r.Run(ctx, h, input, ec)
	} else {
		res, err = r.RunStream(ctx, h, input, ec, sandbox.Stream{Stdout: env.Stdout, Stderr: env.Stderr})
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %v\n", oneLine(err))
		return exitUsage
	}
	if f.json {
		b, _ := json.Marshal(res)
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else if res.OK && len(res.Data) > 0 && string(res.Data) != "null" {
		// A handler's answer is its data: print it, as the command's
		// output would be.
		fmt.Fprintf(env.Stdout, "%s\n", res.Data)
	} else if !res.OK {
		fmt.Fprintf(env.Stderr, "sandbox: %s\n", reason(res))
	}
	return res.ExitStatus()
}

func (f *runFlags) handlerOf(rest []string) (sandbox.Handler, error) {
	kinds := 0
	for _, b := range []bool{f.handler != "", f.wasm != "", f.handler == "" && f.wasm == "" && len(rest) > 0} {
		if b {
			kinds++
		}
	}
	switch {
	case f.handler != "" && f.wasm != "":
		return sandbox.Handler{}, &flagError{flag: "handler", want: "give either --handler, --wasm or -- COMMAND, not several"}
	case f.handler != "":
		if len(rest) > 0 {
			return sandbox.Handler{}, &flagError{flag: "handler", want: "a handler takes no command after --"}
		}
		if f.runtime != "node" && f.runtime != "python" {
			return sandbox.Handler{}, &flagError{flag: "runtime", value: f.runtime, want: `want "node" or "python" with --handler`}
		}
		file, export, _ := strings.Cut(f.handler, "#")
		return sandbox.File(f.runtime, file, export), nil
	case f.wasm != "":
		abs, err := filepath.Abs(f.wasm)
		if err != nil {
			return sandbox.Handler{}, &flagError{flag: "wasm", value: f.wasm, want: "want a path to a .wasm file"}
		}
		return sandbox.WASM(abs, append([]string{filepath.Base(f.wasm)}, rest...)...), nil
	case len(rest) == 0:
		return sandbox.Handler{}, errors.New("nothing to run: want -- COMMAND [ARG...], --handler FILE or --wasm MODULE")
	}
	if f.runtime != "" {
		return sandbox.Handler{}, &flagError{flag: "runtime", value: f.runtime, want: "want --runtime only with --handler"}
	}
	return sandbox.Handler{Command: rest, Protocol: f.protocol}, nil
}

func (f *runFlags) execContext() (*sandbox.ExecutionContext, error) {
	ec := &sandbox.ExecutionContext{}
	if f.context != "" {
		b, err := os.ReadFile(f.context)
		if err != nil {
			return nil, &flagError{flag: "context", value: f.context, want: "want a readable JSON file: " + err.Error()}
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(ec); err != nil {
			return nil, &flagError{flag: "context", value: f.context, want: "want an execution context as JSON: " + err.Error()}
		}
	}
	if f.pluginRoot != "" {
		ec.PluginRoot = f.pluginRoot
	}
	return ec, nil
}

func (f *runFlags) inputOf(env *Env, h sandbox.Handler) (any, error) {
	isCommand := len(h.Command) > 0
	var data []byte
	switch f.input {
	case "":
		if isCommand || h.WASM != "" {
			return env.Stdin, nil // relayed as the program's stdin
		}
		return nil, nil
	case "-":
		b, err := io.ReadAll(env.Stdin)
		if err != nil {
			return nil, &flagError{flag: "input", value: "-", want: "cannot read stdin: " + err.Error()}
		}
		data = b
	default:
		b, err := os.ReadFile(f.input)
		if err != nil {
			return nil, &flagError{flag: "input", value: f.input, want: "want a readable file: " + err.Error()}
		}
		data = b
	}
	if isCommand || h.WASM != "" {
		return data, nil
	}
	if !json.Valid(data) {
		return nil, &flagError{flag: "input", value: f.input, want: "want a JSON document for a handler's input"}
	}
	return json.RawMessage(data), nil
}

// reason is the one-line explanation of a non-ok result.
func reason(r *sandbox.Result) string {
	msg := string(r.Status)
	if r.Error != nil {
		msg += ": " + r.Error.Code
		if r.Error.Message != "" {
			msg += ": " + r.Error.Message
		}
	}
	return oneLine(errors.New(msg))
}

// maxLine bounds the one-line reason: long enough for any message of the
// engine's own with its fix (a rootless cgroup error names several), short
// enough that a handler's megabyte-long error message stays a line.
const maxLine = 4096

func oneLine(err error) string {
	s := strings.ReplaceAll(err.Error(), "\n", " ")
	if len(s) > maxLine {
		s = strings.ToValidUTF8(s[:maxLine], "") + "…"
	}
	return s
}
