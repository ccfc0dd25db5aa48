package cli

import (
	"bytes"
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
	idmap      string
	network    string
	hostname   string
	input      string
	context    string
	handler    string
	runtime    string
	pluginRoot string
	wasm       string
	signature  string
	args       []string       // --arg: a command-style handler's argv
	flags      map[string]any // --flag: its flags
	protocol   bool
	json       bool
	bestEffort bool
	rest       []string // the words after --
	set        map[string]bool
}

func parseRunFlags(env *Env, args []string) (*runFlags, []string, error) {
	f := &runFlags{set: map[string]bool{}}
	p := newParser("run")
	e := &f.cfg.Execution
	p.duration("timeout", "wall-clock limit (default 30s)", "", &e.Timeout)
	p.duration("grace", "time between SIGTERM and SIGKILL (default 5s)", "", &e.Grace)
	p.duration("cpu-time", "CPU-time limit of all processes together (default unlimited)", "unlimited", &e.CPUTime)
	p.add("cpus", "CPU quota in cores, e.g. 0.5 (default unlimited)", func(s string) error {
		v, err := sandbox.ParseCPUs(s)
		if err == nil {
			e.CPUs = v // 0: unlimited, the default
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
	p.add("idmap", "owner or none: as root, host directories are id-mapped so their owner is the sandbox user (owner, the default), or plain binds that need \"other\" permissions (none)", func(s string) error {
		switch s {
		case "owner", "none":
			f.idmap = s
			return nil
		}
		return errors.New(`want "owner" or "none"`)
	})
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
	p.add("signature", `how --handler is called: "input" for fn(input, ctx) (default), "command" for fn(ctx, argv, flags)`, func(s string) error {
		if s != "input" && s != "command" {
			return errors.New(`want "input" (fn(input, ctx)) or "command" (fn(ctx, argv, flags))`)
		}
		f.signature = s
		return nil
	})
	p.list("arg", "an argument for a command-style handler (repeatable; also the words after --)", func(s string) error {
		f.args = append(f.args, s)
		return nil
	})
	p.list("flag", "NAME[=VALUE] flag for a command-style handler (repeatable; NAME alone is true)", func(s string) error {
		name, val, hasValue := strings.Cut(s, "=")
		if name == "" || strings.HasPrefix(name, "-") {
			return errors.New("want NAME or NAME=VALUE, without leading dashes")
		}
		if f.flags == nil {
			f.flags = map[string]any{}
		}
		if hasValue {
			f.flags[name] = val
		} else {
			f.flags[name] = true
		}
		return nil
	})
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
	f.rest = p.fs.Args()
	return f, f.rest, nil
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
	if f.idmap != "" {
		fs.IDMap = sandbox.IDMap(f.idmap)
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
		fmt.Fprintf(env.Stderr, "sandbox run: %s\n", f.explain(err))
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
	var con *console
	if !f.json {
		con = newConsole(env.Stderr)
		cfg.Observers = append(cfg.Observers, con.observer())
	}
	signals := notifyContextSoon(os.Interrupt, syscall.SIGTERM, syscall.SIGHUP)
	r, err := sandbox.New(cfg)
	ctx, stop := signals()
	defer stop()
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %s\n", f.explain(err))
		return exitUsage
	}
	defer r.Close()

	var res *sandbox.Result
	if f.json {
		res, err = r.Run(ctx, h, input, ec)
	} else {
		res, err = r.RunStream(ctx, h, input, ec, sandbox.Stream{Stdout: env.Stdout, Stderr: env.Stderr})
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "sandbox run: %s\n", f.explain(err))
		return exitUsage
	}
	if con != nil {
		con.done()
	}
	if f.json {
		b, _ := json.Marshal(res)
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else if res.OK && len(res.Data) > 0 && string(res.Data) != "null" {
		// A handler's answer is its data: print it, as the command's
		// output would be.
		fmt.Fprintf(env.Stdout, "%s\n", res.Data)
	} else if !res.OK {
		fmt.Fprintf(env.Stderr, "sandbox run: %s\n", reason(res))
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
		if len(rest) > 0 && f.signature != "command" {
			return sandbox.Handler{}, &flagError{flag: "handler", want: "a handler takes no command after --; for fn(ctx, argv, flags) give --signature command, and the words after -- are its argv and flags"}
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
	if f.signature != "" || f.args != nil || f.flags != nil {
		return sandbox.Handler{}, &flagError{flag: "signature", want: "want --signature, --arg and --flag only with --handler"}
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
		if err := checkJSON(b); err != nil {
			return nil, &flagError{flag: "context", value: f.context, want: "want an execution context as JSON: " + err.Error()}
		}
		dec := json.NewDecoder(bytes.NewReader(b))
		dec.DisallowUnknownFields()
		if err := dec.Decode(ec); err != nil {
			return nil, &flagError{flag: "context", value: f.context, want: "want an execution context as JSON: " + err.Error()}
		}
	}
	if f.pluginRoot != "" {
		ec.PluginRoot = f.pluginRoot
	}
	switch f.signature {
	case "command":
		// The handler protocol's command shape: a CLI adapter calling
		// fn(ctx, argv, flags).
		argv, flags := commandArgs(f.rest)
		argv = append(append([]string{}, f.args...), argv...)
		for k, v := range f.flags {
			flags[k] = v
		}
		ec.Adapter = map[string]any{"type": "cli", "argv": argv, "flags": flags}
		meta := sandbox.AdapterMeta{Type: "cli"}
		if ec.AdapterMeta != nil {
			meta = *ec.AdapterMeta
		}
		meta.Signature = "command"
		ec.AdapterMeta = &meta
	case "input":
		// Explicitly fn(input, ctx), whatever a --context file says.
		if ec.AdapterMeta != nil && ec.AdapterMeta.Signature == "command" {
			meta := *ec.AdapterMeta
			meta.Signature = ""
			ec.AdapterMeta = &meta
		}
	}
	return ec, nil
}

// commandArgs splits the words after -- the way a command line would:
// --name=value and --name are flags (a bare --name is true), a lone --
// ends the flags, and every other word is an argument.
func commandArgs(words []string) ([]string, map[string]any) {
	argv, flags := []string{}, map[string]any{}
	for i, w := range words {
		if w == "--" {
			argv = append(argv, words[i+1:]...)
			break
		}
		name, ok := strings.CutPrefix(w, "--")
		if !ok || name == "" {
			argv = append(argv, w)
			continue
		}
		if k, v, hasValue := strings.Cut(name, "="); hasValue {
			flags[k] = v
		} else {
			flags[name] = true
		}
	}
	return argv, flags
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
	if err := checkJSON(data); err != nil {
		return nil, &flagError{flag: "input", value: f.input, want: "want a JSON document for a handler's input: " + err.Error()}
	}
	return json.RawMessage(data), nil
}

// configFlags names the flag behind each config key, so an error about a
// value the user gave as a flag names the flag.
var configFlags = map[string]string{
	"execution.timeout": "timeout", "execution.grace": "grace", "execution.cpuTime": "cpu-time",
	"execution.cpus": "cpus", "execution.memory": "memory", "execution.pids": "pids",
	"execution.maxOutput": "max-output", "execution.maxFileSize": "max-file-size",
	"execution.maxOpenFiles": "max-open-files", "permissions.env": "env",
	"permissions.filesystem.readOnly": "ro", "permissions.filesystem.readWrite": "rw",
	"permissions.filesystem.tmpfs": "tmpfs", "permissions.filesystem.workdir": "workdir",
	"permissions.filesystem.outdir": "outdir", "permissions.network": "net", "permissions.hostname": "hostname",
}

// explain is the one-line message of an error before a run: a config value
// the user gave as a flag is named by the flag, one from the config file by
// the file and its key, and the library's own "sandbox: " prefix is dropped
// (the line already starts with "sandbox run:").
func (f *runFlags) explain(err error) string {
	var ce *sandbox.ConfigError
	if errors.As(err, &ce) {
		if name := f.flagOf(ce.Field); name != "" && ce.File == "" {
			return oneLine(&flagError{flag: name, value: ce.Value, want: ce.Want})
		}
		if ce.File == "" && f.configFile != "" {
			named := *ce
			named.File = f.configFile
			err = &named
		}
	}
	msg := oneLine(err)
	var ue *sandbox.UnenforceableError
	if errors.As(err, &ue) {
		for _, field := range ue.Fields {
			if name := f.flagOf(field); name != "" {
				msg = strings.Replace(msg, field, "--"+name, 1)
			}
		}
	}
	return strings.TrimPrefix(msg, "sandbox: ")
}

// flagOf is the flag that set the config key field, or "" when no flag did.
// List keys carry an index; the flags' entries come after the file's.
func (f *runFlags) flagOf(field string) string {
	for key, name := range configFlags {
		rest, ok := strings.CutPrefix(field, key)
		if !ok || (rest != "" && rest[0] != '.' && rest[0] != '[') || !f.set[name] {
			continue
		}
		if f.configFile == "" {
			return name
		}
		switch name {
		case "env", "ro", "rw", "tmpfs":
			return "" // the file may have entries of its own: keep its key path
		}
		return name
	}
	return ""
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

// checkJSON says where a document stops being JSON: line and column, and
// what was found there.
func checkJSON(data []byte) error {
	var v any
	dec := json.NewDecoder(bytes.NewReader(data))
	err := dec.Decode(&v)
	if err == nil {
		if _, extra := dec.Token(); extra != io.EOF {
			return fmt.Errorf("more than one value (line %s)", position(data, dec.InputOffset()))
		}
		return nil
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Errorf("%v at line %s", se, position(data, se.Offset-1))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("the document ends early (line %s)", position(data, int64(len(data))))
	}
	return err
}

// position is "LINE, column COL" of a byte offset (1-based).
func position(data []byte, off int64) string {
	off = min(max(off, 0), int64(len(data)))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(data[:off], '\n'))
	return fmt.Sprintf("%d, column %d", line, col)
}

// notifyContextSoon is signal.NotifyContext begun now and taken when the
// returned function is called. A process's first signal.Notify starts the
// runtime's signal thread and waits for it (0.2-0.3 ms here); begun before
// sandbox.New, that wait overlaps New's probes instead of delaying the run.
// The run still starts only once the signals are caught, as before.
func notifyContextSoon(sigs ...os.Signal) func() (context.Context, context.CancelFunc) {
	type notified struct {
		ctx  context.Context
		stop context.CancelFunc
	}
	ready := make(chan notified, 1)
	go func() {
		ctx, stop := signal.NotifyContext(context.Background(), sigs...)
		ready <- notified{ctx, stop}
	}()
	return func() (context.Context, context.CancelFunc) {
		n := <-ready
		return n.ctx, n.stop
	}
}
