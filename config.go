package sandbox

import (
	"fmt"
	"github.com/kb-labs/sandbox/internal/hostid"
	"os"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config configures a Runner. It is a plain value: New validates it once,
// copies it, and never reads the caller's copy again. Every zero value means
// the documented default (docs/cli.md, "Config file"); "unlimited" is explicit
// (Unlimited for sizes, counts and durations).
//
// The JSON and YAML names of the fields are the config file schema of
// `sandbox run --config` and `sandbox serve --config`.
type Config struct {
	Mode        Mode           `json:"mode,omitempty" yaml:"mode"`
	BestEffort  bool           `json:"bestEffort,omitempty" yaml:"bestEffort"`
	Execution   Execution      `json:"execution" yaml:"execution"`
	Permissions Permissions    `json:"permissions" yaml:"permissions"`
	Security    Security       `json:"security" yaml:"security"`
	Protocol    ProtocolConfig `json:"protocol" yaml:"protocol"`
	Monitoring  Monitoring     `json:"monitoring" yaml:"monitoring"`
	WASM        WASMConfig     `json:"wasm" yaml:"wasm"`
	Pool        PoolConfig     `json:"pool" yaml:"pool"`
	Server      ServerConfig   `json:"server" yaml:"server"`

	// Observers receive the lifecycle hooks of every run of the Runner.
	Observers []Observer `json:"-" yaml:"-"`
}

// Mode selects the execution strategy of a Runner.
type Mode string

const (
	// Subprocess runs every handler in a fresh isolated process tree (default).
	Subprocess Mode = "subprocess"
	// InProcess runs Go functions (trusted) and WebAssembly modules
	// (untrusted, isolated by the WASM runtime) in the caller's process.
	InProcess Mode = "inprocess"
)

// Execution holds the resource limits of one run.
type Execution struct {
	Timeout      Duration `json:"timeout,omitempty" yaml:"timeout,omitempty"`           // wall clock; default 30s
	Grace        Duration `json:"grace,omitempty" yaml:"grace,omitempty"`               // SIGTERM to SIGKILL; default 5s
	CPUTime      Duration `json:"cpuTime,omitempty" yaml:"cpuTime,omitempty"`           // all processes together; default unlimited
	CPUs         CPUs     `json:"cpus,omitempty" yaml:"cpus,omitempty"`                 // quota in cores; default unlimited
	Memory       Size     `json:"memory,omitempty" yaml:"memory,omitempty"`             // swap included; default 512MiB
	Pids         Count    `json:"pids,omitempty" yaml:"pids,omitempty"`                 // processes + threads; default 128
	MaxOutput    Size     `json:"maxOutput,omitempty" yaml:"maxOutput,omitempty"`       // per stream; default 1MiB
	MaxFileSize  Size     `json:"maxFileSize,omitempty" yaml:"maxFileSize,omitempty"`   // default 64MiB
	MaxOpenFiles Count    `json:"maxOpenFiles,omitempty" yaml:"maxOpenFiles,omitempty"` // default 256
}

// Permissions holds the security controls a run is allowed.
type Permissions struct {
	Env        EnvPolicy  `json:"env" yaml:"env"`
	Filesystem Filesystem `json:"filesystem" yaml:"filesystem"`
	Network    Network    `json:"network,omitempty" yaml:"network"`
	Hostname   string     `json:"hostname,omitempty" yaml:"hostname"`
}

// EnvPolicy: the host environment is never inherited. Allow names host
// variables to pass (exact names or PREFIX_* globs); Set adds settings.
type EnvPolicy struct {
	Allow []string          `json:"allow,omitempty" yaml:"allow"`
	Set   map[string]string `json:"set,omitempty" yaml:"set"`
}

// Filesystem describes what the run sees besides the minimal root.
type Filesystem struct {
	Workdir       string       `json:"workdir,omitempty" yaml:"workdir"` // host dir at /workspace; "" = fresh tmpfs
	WorkspaceSize Size         `json:"workspaceSize,omitempty" yaml:"workspaceSize"`
	Outdir        string       `json:"outdir,omitempty" yaml:"outdir"` // host dir at /out
	ReadOnly      []Mount      `json:"readOnly,omitempty" yaml:"readOnly"`
	ReadWrite     []Mount      `json:"readWrite,omitempty" yaml:"readWrite"`
	Tmpfs         []TmpfsMount `json:"tmpfs,omitempty" yaml:"tmpfs"`
	// AllowSockets permits user mounts whose tree holds unix sockets (a
	// read-only bind does not stop connect()).
	AllowSockets bool `json:"allowSockets,omitempty" yaml:"allowSockets"`
	// IDMap says how a root supervisor mounts host directories (workdir,
	// outdir, readOnly, readWrite, the plugin root). IDMapOwner, the
	// default: the supervisor opens each itself and mounts it id-mapped so
	// that its host owner is the sandbox user; no permission on its parents
	// is needed, and files the program creates belong to the owner.
	// IDMapNone: plain binds opened by the sandbox's own ids, so a tree
	// must be reachable, readable (and writable) by others. Rootless runs
	// always map the caller's own id and ignore it.
	IDMap IDMap `json:"idmap,omitempty" yaml:"idmap"`
}

// IDMap is how host directories are mapped (Filesystem.IDMap).
type IDMap string

const (
	IDMapOwner IDMap = "owner" // the directory's owner is the sandbox user (default; "" too)
	IDMapNone  IDMap = "none"  // plain binds: only the "other" permission bits count
)

// Mount binds a host path into the sandbox; Target defaults to Source.
type Mount struct {
	Source string `json:"source" yaml:"source"`
	Target string `json:"target,omitempty" yaml:"target"`
}

// TmpfsMount is a size-limited tmpfs; a target of /tmp replaces the default /tmp.
type TmpfsMount struct {
	Target string `json:"target" yaml:"target"`
	Size   Size   `json:"size,omitempty" yaml:"size"`
}

// Network is the network a run gets.
type Network string

const (
	NetworkNone     Network = "none"     // own namespace, nothing up (default)
	NetworkLoopback Network = "loopback" // own namespace, lo up
	NetworkHost     Network = "host"     // the host's network: explicit opt-in
)

// Security switches the hardening layers. Turning one off is explicit and
// reported in Result.Isolation.
type Security struct {
	Seccomp     *bool       `json:"seccomp,omitempty" yaml:"seccomp"`   // default true
	Landlock    *bool       `json:"landlock,omitempty" yaml:"landlock"` // default true
	OnViolation OnViolation `json:"onViolation,omitempty" yaml:"onViolation"`
	// HostIDRange is where root-started sandboxes take their host ids from,
	// "FIRST:COUNT" as in /etc/subuid: each sandbox in flight holds its own
	// pair. Empty means DefaultHostIDRange (outside subordinate id ranges).
	HostIDRange string `json:"hostIdRange,omitempty" yaml:"hostIdRange"`
}

// OnViolation says what a denied system call does.
type OnViolation string

const (
	ViolationErrno OnViolation = "errno" // the call fails with EPERM (default)
	ViolationKill  OnViolation = "kill"  // the run ends as StatusViolation
)

// ProtocolConfig bounds the handler protocol (docs/handler-protocol.md).
type ProtocolConfig struct {
	MaxMessageBytes  Size     `json:"maxMessageBytes,omitempty" yaml:"maxMessageBytes"`   // default 16MiB
	HandshakeTimeout Duration `json:"handshakeTimeout,omitempty" yaml:"handshakeTimeout"` // default 10s
}

// Monitoring controls what a Result carries.
type Monitoring struct {
	CollectLogs   *bool `json:"collectLogs,omitempty" yaml:"collectLogs"` // default true
	LogBufferSize Size  `json:"logBufferSize,omitempty" yaml:"logBufferSize"`
	CollectTraces bool  `json:"collectTraces,omitempty" yaml:"collectTraces"`
}

// WASMConfig configures the in-process WebAssembly runner.
type WASMConfig struct {
	CacheDir      string `json:"cacheDir,omitempty" yaml:"cacheDir"`
	Deterministic bool   `json:"deterministic,omitempty" yaml:"deterministic"`
}

// PoolConfig: warm sandboxes kept ready (0 = none).
type PoolConfig struct {
	Size int `json:"size,omitempty" yaml:"size"`
}

// ServerConfig configures `sandbox serve`.
type ServerConfig struct {
	Listen           string    `json:"listen,omitempty" yaml:"listen"`
	TokenFile        string    `json:"tokenFile,omitempty" yaml:"tokenFile"`
	MaxConcurrency   int       `json:"maxConcurrency,omitempty" yaml:"maxConcurrency"`
	MaxQueue         int       `json:"maxQueue,omitempty" yaml:"maxQueue"`
	MaxBodyBytes     Size      `json:"maxBodyBytes,omitempty" yaml:"maxBodyBytes"`
	AllowHostNetwork bool      `json:"allowHostNetwork,omitempty" yaml:"allowHostNetwork"`
	EnvAllowCeiling  []string  `json:"envAllowCeiling,omitempty" yaml:"envAllowCeiling"`
	Defaults         Execution `json:"defaults" yaml:"defaults"`
	Ceilings         Execution `json:"ceilings" yaml:"ceilings"`
}

// Defaults of the configuration (docs/cli.md).
const (
	DefaultTimeout       = Duration(30 * time.Second)
	DefaultGrace         = Duration(5 * time.Second)
	DefaultMemory        = 512 * MiB
	DefaultPids          = Count(128)
	DefaultMaxOutput     = 1 * MiB
	DefaultMaxFileSize   = 64 * MiB
	DefaultMaxOpenFiles  = Count(256)
	DefaultWorkspaceSize = 256 * MiB
	DefaultTmpSize       = 64 * MiB
	DefaultHostIDRange   = "1879048192:65536" // 0x70000000, 32768 pairs; see hostids.go
	DefaultMaxMessage    = 16 * MiB
	DefaultHandshake     = Duration(10 * time.Second)
	DefaultLogBuffer     = 1 * MiB
	DefaultHostname      = "sandbox"
)

// ConfigError is a bad configuration value. Field is the dotted config path
// (execution.memory), Want the accepted form, and File the config file the
// value came from, when it came from one.
type ConfigError struct {
	Field string
	Value string
	Want  string
	File  string
}

func (e *ConfigError) Error() string {
	where := "config " + e.Field
	if e.File != "" {
		where = "config " + e.File + ": " + e.Field
	}
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", where, e.Want)
	}
	return fmt.Sprintf("%s: %s; got %q", where, e.Want, e.Value)
}

// UnenforceableError is the error of New when the host cannot enforce what
// the configuration asks for and BestEffort is off (fail closed). Layer is
// the missing mechanism ("cgroup", "seccomp", "landlock", "user
// namespaces", "mount API"); Fields are the dotted paths of the settings
// that need it (execution.memory), when settings are to blame. The message
// names the missing feature and the fix; it may name host paths and ids, so
// it is meant for the operator, not for a remote client.
type UnenforceableError struct {
	Layer  string
	Fields []string
	msg    string
}

func (e *UnenforceableError) Error() string { return e.msg }

// withDefaults returns a deep-enough copy of c with every zero value replaced
// by its default. Explicit Unlimited values are kept.
func (c Config) withDefaults() Config {
	if c.Mode == "" {
		c.Mode = Subprocess
	}
	if c.Mode == InProcess && c.Execution.Pids == 0 {
		// Nothing in-process counts processes: the truthful default is no
		// limit, so that an explicit limit (even 128) can be refused.
		c.Execution.Pids = Unlimited
	}
	c.Execution = c.Execution.withDefaults()
	p := &c.Permissions
	if p.Network == "" {
		p.Network = NetworkNone
	}
	if p.Hostname == "" {
		p.Hostname = DefaultHostname
	}
	if p.Filesystem.WorkspaceSize == 0 {
		p.Filesystem.WorkspaceSize = DefaultWorkspaceSize
	}
	p.Env.Allow = append([]string(nil), p.Env.Allow...)
	set := make(map[string]string, len(p.Env.Set))
	for k, v := range p.Env.Set {
		set[k] = v
	}
	p.Env.Set = set
	p.Filesystem.ReadOnly = append([]Mount(nil), p.Filesystem.ReadOnly...)
	p.Filesystem.ReadWrite = append([]Mount(nil), p.Filesystem.ReadWrite...)
	p.Filesystem.Tmpfs = append([]TmpfsMount(nil), p.Filesystem.Tmpfs...)
	s := &c.Security
	if s.Seccomp == nil {
		s.Seccomp = Bool(true)
	} else {
		s.Seccomp = Bool(*s.Seccomp)
	}
	if s.Landlock == nil {
		s.Landlock = Bool(true)
	} else {
		s.Landlock = Bool(*s.Landlock)
	}
	if s.OnViolation == "" {
		s.OnViolation = ViolationErrno
	}
	if s.HostIDRange == "" {
		s.HostIDRange = DefaultHostIDRange
	}
	if c.Protocol.MaxMessageBytes == 0 {
		c.Protocol.MaxMessageBytes = DefaultMaxMessage
	}
	if c.Protocol.HandshakeTimeout == 0 {
		c.Protocol.HandshakeTimeout = DefaultHandshake
	}
	if c.Monitoring.CollectLogs == nil {
		c.Monitoring.CollectLogs = Bool(true)
	} else {
		c.Monitoring.CollectLogs = Bool(*c.Monitoring.CollectLogs)
	}
	if c.Monitoring.LogBufferSize == 0 {
		c.Monitoring.LogBufferSize = DefaultLogBuffer
	}
	c.Observers = append([]Observer(nil), c.Observers...)
	return c
}

func (e Execution) withDefaults() Execution {
	if e.Timeout == 0 {
		e.Timeout = DefaultTimeout
	}
	if e.Grace == 0 {
		e.Grace = DefaultGrace
	}
	if e.CPUTime == 0 {
		e.CPUTime = Unlimited
	}
	if e.CPUs == 0 {
		e.CPUs = Unlimited
	}
	if e.Memory == 0 {
		e.Memory = DefaultMemory
	}
	if e.Pids == 0 {
		e.Pids = DefaultPids
	}
	if e.MaxOutput == 0 {
		e.MaxOutput = DefaultMaxOutput
	}
	if e.MaxFileSize == 0 {
		e.MaxFileSize = DefaultMaxFileSize
	}
	if e.MaxOpenFiles == 0 {
		e.MaxOpenFiles = DefaultMaxOpenFiles
	}
	return e
}

// validate checks a config that has its defaults applied.
func (c *Config) validate() error {
	switch c.Mode {
	case Subprocess, InProcess:
	default:
		return &ConfigError{Field: "mode", Value: string(c.Mode), Want: `want "subprocess" or "inprocess"`}
	}
	if err := c.Execution.validate("execution"); err != nil {
		return err
	}
	if c.Mode == InProcess && c.Execution.Pids != Unlimited {
		// Nothing in-process can count processes: refusing beats pretending.
		return &ConfigError{Field: "execution.pids", Value: c.Execution.Pids.String(), Want: "in-process mode cannot enforce a process limit; remove it or use subprocess mode"}
	}
	p := c.Permissions
	switch p.Network {
	case NetworkNone, NetworkLoopback, NetworkHost:
	default:
		return &ConfigError{Field: "permissions.network", Value: string(p.Network), Want: `want "none", "loopback" or "host"`}
	}
	if c.Mode == InProcess && p.Network != NetworkNone {
		return &ConfigError{Field: "permissions.network", Value: string(p.Network), Want: `in-process mode has no network; want "none"`}
	}
	if !validHostname(p.Hostname) {
		return &ConfigError{Field: "permissions.hostname", Value: p.Hostname, Want: "want a hostname of letters, digits, '-' and '.', at most 64 characters"}
	}
	for i, a := range p.Env.Allow {
		if !ValidEnvPattern(a) {
			return &ConfigError{Field: fmt.Sprintf("permissions.env.allow[%d]", i), Value: a, Want: "want a variable name (A-Z, a-z, 0-9, _) or a PREFIX_* glob"}
		}
	}
	for k := range p.Env.Set {
		if !ValidEnvName(k) {
			return &ConfigError{Field: "permissions.env.set", Value: k, Want: "want variable names of A-Z, a-z, 0-9 and _, not starting with a digit"}
		}
	}
	fs := p.Filesystem
	if err := checkSize("permissions.filesystem.workspaceSize", fs.WorkspaceSize, false); err != nil {
		return err
	}
	for _, d := range []struct{ name, val string }{{"workdir", fs.Workdir}, {"outdir", fs.Outdir}} {
		if d.val != "" && !path.IsAbs(d.val) {
			return &ConfigError{Field: "permissions.filesystem." + d.name, Value: d.val, Want: "want an absolute host path (the CLI makes relative paths absolute)"}
		}
	}
	switch fs.IDMap {
	case "", IDMapOwner, IDMapNone:
	default:
		return &ConfigError{Field: "permissions.filesystem.idmap", Value: string(fs.IDMap), Want: `want "owner" (the default) or "none"`}
	}
	for _, list := range []struct {
		name   string
		mounts []Mount
	}{{"readOnly", fs.ReadOnly}, {"readWrite", fs.ReadWrite}} {
		for i, m := range list.mounts {
			field := fmt.Sprintf("permissions.filesystem.%s[%d]", list.name, i)
			if !path.IsAbs(m.Source) {
				return &ConfigError{Field: field + ".source", Value: m.Source, Want: "want an absolute host path"}
			}
			if m.Target != "" && !path.IsAbs(m.Target) {
				return &ConfigError{Field: field + ".target", Value: m.Target, Want: "want an absolute path inside the sandbox"}
			}
		}
	}
	for i, t := range fs.Tmpfs {
		field := fmt.Sprintf("permissions.filesystem.tmpfs[%d]", i)
		if !path.IsAbs(t.Target) {
			return &ConfigError{Field: field + ".target", Value: t.Target, Want: "want an absolute path inside the sandbox"}
		}
		if err := checkSize(field+".size", t.Size, true); err != nil {
			return err
		}
	}
	switch c.Security.OnViolation {
	case ViolationErrno, ViolationKill:
	default:
		return &ConfigError{Field: "security.onViolation", Value: string(c.Security.OnViolation), Want: `want "errno" or "kill"`}
	}
	if _, err := hostIDRange(c.Security); err != nil {
		return &ConfigError{Field: "security.hostIdRange", Value: c.Security.HostIDRange, Want: err.Error() + " (ids nobody else holds; empty for the built-in " + DefaultHostIDRange + ")"}
	}
	if err := checkSize("protocol.maxMessageBytes", c.Protocol.MaxMessageBytes, false); err != nil {
		return err
	}
	if c.Protocol.MaxMessageBytes < 1024 {
		return &ConfigError{Field: "protocol.maxMessageBytes", Value: c.Protocol.MaxMessageBytes.String(), Want: "want at least 1KiB"}
	}
	if c.Protocol.HandshakeTimeout < 0 {
		return &ConfigError{Field: "protocol.handshakeTimeout", Value: c.Protocol.HandshakeTimeout.String(), Want: "want a positive duration such as 10s"}
	}
	if err := checkSize("monitoring.logBufferSize", c.Monitoring.LogBufferSize, false); err != nil {
		return err
	}
	if c.Pool.Size < 0 || c.Pool.Size > 1024 {
		return &ConfigError{Field: "pool.size", Value: strconv.Itoa(c.Pool.Size), Want: "want a number of warm sandboxes between 0 and 1024"}
	}
	return nil
}

func (e Execution) validate(prefix string) error {
	for _, d := range []struct {
		name      string
		v         Duration
		unlimited bool
	}{{"timeout", e.Timeout, true}, {"grace", e.Grace, false}, {"cpuTime", e.CPUTime, true}} {
		if d.v < 0 && (d.v != Unlimited || !d.unlimited) {
			want := "want a positive duration such as 500ms, 2s or 1m"
			if d.unlimited {
				want += `, or "unlimited"`
			}
			return &ConfigError{Field: prefix + "." + d.name, Value: d.v.String(), Want: want}
		}
	}
	if e.CPUs < 0 && e.CPUs != Unlimited {
		return &ConfigError{Field: prefix + ".cpus", Value: e.CPUs.String(), Want: `want a number of cores such as 0.5, or "unlimited"`}
	}
	if e.CPUs > 0 && e.CPUs < 0.01 {
		return &ConfigError{Field: prefix + ".cpus", Value: e.CPUs.String(), Want: "want at least 0.01 cores"}
	}
	for _, s := range []struct {
		name string
		v    Size
	}{{"memory", e.Memory}, {"maxOutput", e.MaxOutput}, {"maxFileSize", e.MaxFileSize}} {
		if err := checkSize(prefix+"."+s.name, s.v, true); err != nil {
			return err
		}
	}
	if e.Memory > 0 && e.Memory < 4*MiB {
		return &ConfigError{Field: prefix + ".memory", Value: e.Memory.String(), Want: "want at least 4MiB"}
	}
	for _, c := range []struct {
		name string
		v    Count
	}{{"pids", e.Pids}, {"maxOpenFiles", e.MaxOpenFiles}} {
		if c.v < 0 && c.v != Unlimited {
			return &ConfigError{Field: prefix + "." + c.name, Value: c.v.String(), Want: `want a whole number >= 1, or "unlimited"`}
		}
	}
	if e.MaxOpenFiles > 0 && e.MaxOpenFiles < 16 {
		return &ConfigError{Field: prefix + ".maxOpenFiles", Value: e.MaxOpenFiles.String(), Want: "want at least 16 (the runtimes need a few descriptors)"}
	}
	return nil
}

func checkSize(field string, v Size, unlimited bool) error {
	if v >= 0 || (v == Unlimited && unlimited) {
		return nil
	}
	want := "want a size such as 512MiB, 64KB or 1048576"
	if unlimited {
		want += `, or "unlimited"`
	}
	return &ConfigError{Field: field, Value: v.String(), Want: want}
}

func validHostname(h string) bool {
	if h == "" || len(h) > 64 {
		return false
	}
	for _, r := range h {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// ValidEnvName reports whether n is a variable name the environment policy
// accepts: A-Z, a-z, 0-9 and _, not starting with a digit.
func ValidEnvName(n string) bool {
	if n == "" {
		return false
	}
	for i, r := range n {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ValidEnvPattern reports whether p is an allow-list entry: a variable name
// or a PREFIX_* glob.
func ValidEnvPattern(p string) bool {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		return prefix != "" && ValidEnvName(prefix)
	}
	return ValidEnvName(p)
}

// resolveEnv builds a run's environment: the base, then allowed host
// variables, then settings. The host environment is never inherited whole.
func resolveEnv(policy EnvPolicy, extra map[string]string) []string {
	env := map[string]string{
		"PATH":   "/usr/local/bin:/usr/bin:/bin",
		"HOME":   "/workspace",
		"TMPDIR": "/tmp",
		"LANG":   "C.UTF-8",
	}
	for _, kv := range os.Environ() {
		name, value, _ := strings.Cut(kv, "=")
		if envAllowed(policy.Allow, name) {
			env[name] = value
		}
	}
	for k, v := range policy.Set {
		env[k] = v
	}
	for k, v := range extra {
		env[k] = v
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}

func envAllowed(allow []string, name string) bool {
	for _, a := range allow {
		if prefix, ok := strings.CutSuffix(a, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if a == name {
			return true
		}
	}
	return false
}

// hostIDRange is the configured range, or the built-in one when empty.
func hostIDRange(s Security) (hostid.Range, error) {
	if s.HostIDRange == "" {
		return hostid.Parse(DefaultHostIDRange)
	}
	return hostid.Parse(s.HostIDRange)
}
