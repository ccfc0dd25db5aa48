package sandbox_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/kb-labs/sandbox"
)

// configError asserts that err is a *ConfigError naming field whose message
// carries want (the accepted form).
func configError(t *testing.T, err error, field, want string) {
	t.Helper()
	var ce *sandbox.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("error %v (%T) is not a *ConfigError", err, err)
	}
	if ce.Field != field {
		t.Errorf("Field = %q, want %q (error: %v)", ce.Field, field, err)
	}
	if !strings.Contains(err.Error(), field) {
		t.Errorf("message %q does not name the field %q", err, field)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("message %q does not carry the accepted form %q", err, want)
	}
}

func TestNewRefusesBadFields(t *testing.T) {
	sec := func(d time.Duration) sandbox.Duration { return sandbox.Duration(d) }
	tests := []struct {
		name  string
		cfg   sandbox.Config
		field string
		want  string
	}{
		{"mode", sandbox.Config{Mode: "docker"}, "mode", `"subprocess" or "inprocess"`},
		{"negative timeout", sandbox.Config{Execution: sandbox.Execution{Timeout: sec(-5 * time.Second)}}, "execution.timeout", "positive duration"},
		{"unlimited grace", sandbox.Config{Execution: sandbox.Execution{Grace: sandbox.Unlimited}}, "execution.grace", "positive duration"},
		{"negative cpuTime", sandbox.Config{Execution: sandbox.Execution{CPUTime: sec(-time.Minute)}}, "execution.cpuTime", `or "unlimited"`},
		{"negative cpus", sandbox.Config{Execution: sandbox.Execution{CPUs: -0.5}}, "execution.cpus", "number of cores"},
		{"tiny cpus", sandbox.Config{Execution: sandbox.Execution{CPUs: 0.001}}, "execution.cpus", "at least 0.01"},
		{"negative memory", sandbox.Config{Execution: sandbox.Execution{Memory: -2}}, "execution.memory", "size such as 512MiB"},
		{"tiny memory", sandbox.Config{Execution: sandbox.Execution{Memory: sandbox.MiB}}, "execution.memory", "at least 4MiB"},
		{"negative maxOutput", sandbox.Config{Execution: sandbox.Execution{MaxOutput: -5}}, "execution.maxOutput", "size such as"},
		{"negative maxFileSize", sandbox.Config{Execution: sandbox.Execution{MaxFileSize: -5}}, "execution.maxFileSize", "size such as"},
		{"negative pids", sandbox.Config{Execution: sandbox.Execution{Pids: -3}}, "execution.pids", "whole number"},
		{"negative maxOpenFiles", sandbox.Config{Execution: sandbox.Execution{MaxOpenFiles: -3}}, "execution.maxOpenFiles", "whole number"},
		{"few open files", sandbox.Config{Execution: sandbox.Execution{MaxOpenFiles: 8}}, "execution.maxOpenFiles", "at least 16"},
		{"network", sandbox.Config{Permissions: sandbox.Permissions{Network: "wifi"}}, "permissions.network", `"none", "loopback" or "host"`},
		{"hostname chars", sandbox.Config{Permissions: sandbox.Permissions{Hostname: "bad host"}}, "permissions.hostname", "letters, digits"},
		{"hostname length", sandbox.Config{Permissions: sandbox.Permissions{Hostname: strings.Repeat("h", 65)}}, "permissions.hostname", "at most 64"},
		{"env allow digit", sandbox.Config{Permissions: sandbox.Permissions{Env: sandbox.EnvPolicy{Allow: []string{"LANG", "1BAD"}}}}, "permissions.env.allow[1]", "PREFIX_* glob"},
		{"env allow bare star", sandbox.Config{Permissions: sandbox.Permissions{Env: sandbox.EnvPolicy{Allow: []string{"*"}}}}, "permissions.env.allow[0]", "PREFIX_* glob"},
		{"env set name", sandbox.Config{Permissions: sandbox.Permissions{Env: sandbox.EnvPolicy{Set: map[string]string{"A-B": "x"}}}}, "permissions.env.set", "variable names"},
		{"workspaceSize", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{WorkspaceSize: sandbox.Unlimited}}}, "permissions.filesystem.workspaceSize", "size such as"},
		{"relative workdir", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Workdir: "work"}}}, "permissions.filesystem.workdir", "absolute host path"},
		{"relative outdir", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Outdir: "out"}}}, "permissions.filesystem.outdir", "absolute host path"},
		{"relative ro source", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{ReadOnly: []sandbox.Mount{{Source: "data"}}}}}, "permissions.filesystem.readOnly[0].source", "absolute host path"},
		{"relative rw target", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{ReadWrite: []sandbox.Mount{{Source: "/srv", Target: "srv"}}}}}, "permissions.filesystem.readWrite[0].target", "absolute path inside the sandbox"},
		{"relative tmpfs", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Tmpfs: []sandbox.TmpfsMount{{Target: "/tmp"}, {Target: "scratch"}}}}}, "permissions.filesystem.tmpfs[1].target", "absolute path"},
		{"tmpfs size", sandbox.Config{Permissions: sandbox.Permissions{Filesystem: sandbox.Filesystem{Tmpfs: []sandbox.TmpfsMount{{Target: "/tmp", Size: -7}}}}}, "permissions.filesystem.tmpfs[0].size", "size such as"},
		{"onViolation", sandbox.Config{Security: sandbox.Security{OnViolation: "ignore"}}, "security.onViolation", `"errno" or "kill"`},
		{"hostIdRange form", sandbox.Config{Security: sandbox.Security{HostIDRange: "200000-300000"}}, "security.hostIdRange", "FIRST:COUNT"},
		{"hostIdRange root", sandbox.Config{Security: sandbox.Security{HostIDRange: "0:65536"}}, "security.hostIdRange", "id 0 is host root"},
		{"hostIdRange single", sandbox.Config{Security: sandbox.Security{HostIDRange: "200000:1"}}, "security.hostIdRange", "pair of ids"},
		{"maxMessageBytes small", sandbox.Config{Protocol: sandbox.ProtocolConfig{MaxMessageBytes: 100}}, "protocol.maxMessageBytes", "at least 1KiB"},
		{"maxMessageBytes unlimited", sandbox.Config{Protocol: sandbox.ProtocolConfig{MaxMessageBytes: sandbox.Unlimited}}, "protocol.maxMessageBytes", "size such as"},
		{"handshakeTimeout", sandbox.Config{Protocol: sandbox.ProtocolConfig{HandshakeTimeout: sec(-time.Second)}}, "protocol.handshakeTimeout", "positive duration"},
		{"logBufferSize", sandbox.Config{Monitoring: sandbox.Monitoring{LogBufferSize: sandbox.Unlimited}}, "monitoring.logBufferSize", "size such as"},
		{"pool negative", sandbox.Config{Pool: sandbox.PoolConfig{Size: -1}}, "pool.size", "between 0 and 1024"},
		{"pool huge", sandbox.Config{Pool: sandbox.PoolConfig{Size: 2000}}, "pool.size", "between 0 and 1024"},
		// Limits in-process mode cannot enforce are refused, not ignored.
		{"inprocess pids", sandbox.Config{Mode: sandbox.InProcess, Execution: sandbox.Execution{Pids: 64}}, "execution.pids", "in-process mode cannot enforce"},
		{"inprocess explicit default pids", sandbox.Config{Mode: sandbox.InProcess, Execution: sandbox.Execution{Pids: sandbox.DefaultPids}}, "execution.pids", "in-process mode cannot enforce"},
		{"inprocess loopback", sandbox.Config{Mode: sandbox.InProcess, Permissions: sandbox.Permissions{Network: sandbox.NetworkLoopback}}, "permissions.network", "in-process mode has no network"},
		{"inprocess host network", sandbox.Config{Mode: sandbox.InProcess, Permissions: sandbox.Permissions{Network: sandbox.NetworkHost}}, "permissions.network", "in-process mode has no network"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := sandbox.New(tt.cfg)
			if err == nil {
				r.Close()
				t.Fatalf("New accepted the config")
			}
			configError(t, err, tt.field, tt.want)
			// Preflight reports the same error as its config check.
			pf := sandbox.RunPreflight(t.Context(), tt.cfg)
			if pf.Passed || len(pf.Checks) == 0 || pf.Checks[0].Name != "config" || !strings.Contains(pf.Checks[0].Error, tt.field) {
				t.Errorf("preflight = %+v, want a failed config check naming %s", pf, tt.field)
			}
		})
	}
}

func TestInProcessAcceptsWhatItCanHonour(t *testing.T) {
	for _, cfg := range []sandbox.Config{
		{Mode: sandbox.InProcess},
		{Mode: sandbox.InProcess, Execution: sandbox.Execution{Pids: sandbox.Unlimited}},
		{Mode: sandbox.InProcess, Permissions: sandbox.Permissions{Network: sandbox.NetworkNone}},
	} {
		r, err := sandbox.New(cfg)
		if err != nil {
			t.Errorf("New(%+v): %v", cfg.Execution, err)
			continue
		}
		if got := r.Config().Execution.Pids; got != sandbox.Unlimited {
			t.Errorf("in-process Config().Execution.Pids = %v, want unlimited (nothing counts processes)", got)
		}
		r.Close()
	}
}

func TestZeroMeansDefault(t *testing.T) {
	r, err := sandbox.New(sandbox.Config{Mode: sandbox.InProcess})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	c := r.Config()
	e := c.Execution
	want := sandbox.Execution{
		Timeout: sandbox.DefaultTimeout, Grace: sandbox.DefaultGrace, CPUTime: sandbox.Unlimited,
		CPUs: sandbox.Unlimited, Memory: sandbox.DefaultMemory, Pids: sandbox.Unlimited,
		MaxOutput: sandbox.DefaultMaxOutput, MaxFileSize: sandbox.DefaultMaxFileSize, MaxOpenFiles: sandbox.DefaultMaxOpenFiles,
	}
	if e != want {
		t.Errorf("defaults = %+v, want %+v", e, want)
	}
	if e.Timeout != sandbox.Duration(30*time.Second) || e.Memory != 512*sandbox.MiB || e.MaxOutput != sandbox.MiB {
		t.Errorf("section 7 defaults changed: %+v", e)
	}
	switch {
	case c.Permissions.Network != sandbox.NetworkNone, c.Permissions.Hostname != "sandbox",
		c.Permissions.Filesystem.WorkspaceSize != 256*sandbox.MiB,
		c.Security.Seccomp == nil || !*c.Security.Seccomp, c.Security.Landlock == nil || !*c.Security.Landlock,
		c.Security.OnViolation != sandbox.ViolationErrno, c.Security.HostIDRange != sandbox.DefaultHostIDRange,
		c.Protocol.MaxMessageBytes != 16*sandbox.MiB, c.Protocol.HandshakeTimeout != sandbox.Duration(10*time.Second),
		c.Monitoring.CollectLogs == nil || !*c.Monitoring.CollectLogs, c.Monitoring.LogBufferSize != sandbox.MiB,
		c.Monitoring.CollectTraces:
		t.Errorf("defaults: %+v", c)
	}

	// Explicit values, "unlimited" included, are kept; explicit false switches stay false.
	cfg := sandbox.Config{Mode: sandbox.InProcess,
		Execution:  sandbox.Execution{Timeout: sandbox.Unlimited, CPUTime: sandbox.Duration(time.Second), CPUs: 0.5, Memory: sandbox.Unlimited, MaxOutput: sandbox.Unlimited, MaxOpenFiles: sandbox.Unlimited},
		Monitoring: sandbox.Monitoring{CollectLogs: sandbox.Bool(false)},
		Security:   sandbox.Security{Seccomp: sandbox.Bool(false)},
	}
	r2, err := sandbox.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r2.Close()
	c2 := r2.Config()
	e2 := c2.Execution
	if e2.Timeout != sandbox.Unlimited || e2.CPUTime != sandbox.Duration(time.Second) || e2.CPUs != 0.5 ||
		e2.Memory != sandbox.Unlimited || e2.MaxOutput != sandbox.Unlimited || e2.MaxOpenFiles != sandbox.Unlimited {
		t.Errorf("explicit values not kept: %+v", e2)
	}
	if *c2.Monitoring.CollectLogs || *c2.Security.Seccomp {
		t.Errorf("explicit false switches became true: logs %v seccomp %v", *c2.Monitoring.CollectLogs, *c2.Security.Seccomp)
	}
	// New copies: changing the caller's switch later does not reach the Runner.
	*cfg.Monitoring.CollectLogs = true
	if *r2.Config().Monitoring.CollectLogs {
		t.Error("Runner shares the caller's *bool")
	}
}

func TestUnits(t *testing.T) {
	sizes := []struct {
		in   string
		want sandbox.Size
	}{
		{"0", 0}, {"1048576", sandbox.MiB}, {"512MiB", 512 * sandbox.MiB}, {"512M", 512 * sandbox.MiB},
		{"1K", 1024}, {"1KiB", 1024}, {"64KB", 64000}, {"2MB", 2000000}, {"1GB", 1000000000},
		{"1G", sandbox.GiB}, {"1.5GiB", 3 * sandbox.GiB / 2}, {"64 KiB", 64 * sandbox.KiB},
		{"unlimited", sandbox.Unlimited},
	}
	for _, s := range sizes {
		got, err := sandbox.ParseSize(s.in)
		if err != nil || got != s.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", s.in, got, err, s.want)
		}
		if back, err := sandbox.ParseSize(got.String()); err != nil || back != got {
			t.Errorf("ParseSize(%q).String() = %q does not parse back: %d, %v", s.in, got, back, err)
		}
	}
	for _, bad := range []string{"", "banana", "-1", "512mb", "64k", "1.5", "1e6", "MiB", "99999999999999GiB"} {
		if v, err := sandbox.ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) = %d, want an error", bad, v)
		} else if !strings.Contains(err.Error(), "want a size") {
			t.Errorf("ParseSize(%q) error %q does not name the accepted form", bad, err)
		}
	}
	if _, err := sandbox.ParseSize("512mb"); err == nil || !strings.Contains(err.Error(), `"MB"`) {
		t.Errorf("ParseSize(512mb) = %v, want a hint naming MB", err)
	}

	durations := []struct {
		in   string
		want sandbox.Duration
	}{
		{"0", 0}, {"500ms", sandbox.Duration(500 * time.Millisecond)}, {"2s", sandbox.Duration(2 * time.Second)},
		{"1m", sandbox.Duration(time.Minute)}, {"1m30s", sandbox.Duration(90 * time.Second)}, {"unlimited", sandbox.Unlimited},
	}
	for _, d := range durations {
		got, err := sandbox.ParseDuration(d.in)
		if err != nil || got != d.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", d.in, got, err, d.want)
		}
	}
	for _, bad := range []string{"", "30", "-1s", "1d", "soon", "1.5"} {
		if v, err := sandbox.ParseDuration(bad); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", bad, v)
		} else if !strings.Contains(err.Error(), "want a duration") {
			t.Errorf("ParseDuration(%q) error %q does not name the accepted form", bad, err)
		}
	}

	for in, want := range map[string]sandbox.Count{"0": 0, "128": 128, " 7 ": 7, "unlimited": sandbox.Unlimited} {
		if got, err := sandbox.ParseCount(in); err != nil || got != want {
			t.Errorf("ParseCount(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "1.5", "x", "1e3", "99999999999999999999"} {
		if v, err := sandbox.ParseCount(bad); err == nil {
			t.Errorf("ParseCount(%q) = %v, want an error", bad, v)
		}
	}

	for in, want := range map[string]sandbox.CPUs{"0.5": 0.5, "2": 2, "0": 0, "unlimited": sandbox.Unlimited} {
		if got, err := sandbox.ParseCPUs(in); err != nil || got != want {
			t.Errorf("ParseCPUs(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "-1", "NaN", "x", "5000", "Inf"} {
		if v, err := sandbox.ParseCPUs(bad); err == nil {
			t.Errorf("ParseCPUs(%q) = %v, want an error", bad, v)
		} else if !strings.Contains(err.Error(), "number of cores") {
			t.Errorf("ParseCPUs(%q) error %q does not name the accepted form", bad, err)
		}
	}
}

// fullConfig sets at least one field of every section.
func fullConfig() sandbox.Config {
	return sandbox.Config{
		Mode:       sandbox.Subprocess,
		BestEffort: true,
		Execution: sandbox.Execution{
			Timeout: sandbox.Duration(10 * time.Second), Grace: sandbox.Duration(500 * time.Millisecond),
			CPUTime: sandbox.Unlimited, CPUs: 0.5, Memory: 256 * sandbox.MiB, Pids: 64,
			MaxOutput: 64000, MaxFileSize: sandbox.Unlimited, MaxOpenFiles: 512,
		},
		Permissions: sandbox.Permissions{
			Env: sandbox.EnvPolicy{Allow: []string{"LANG", "MYAPP_*"}, Set: map[string]string{"FOO": "bar"}},
			Filesystem: sandbox.Filesystem{
				Workdir: "/srv/work", WorkspaceSize: 128 * sandbox.MiB, Outdir: "/srv/out",
				ReadOnly:  []sandbox.Mount{{Source: "/srv/data", Target: "/data"}},
				ReadWrite: []sandbox.Mount{{Source: "/srv/cache"}},
				Tmpfs:     []sandbox.TmpfsMount{{Target: "/tmp", Size: 64 * sandbox.MiB}},
			},
			Network:  sandbox.NetworkLoopback,
			Hostname: "box",
		},
		Security:   sandbox.Security{Seccomp: sandbox.Bool(true), Landlock: sandbox.Bool(false), OnViolation: sandbox.ViolationKill, HostIDRange: "200000:4096"},
		Protocol:   sandbox.ProtocolConfig{MaxMessageBytes: 8 * sandbox.MiB, HandshakeTimeout: sandbox.Duration(3 * time.Second)},
		Monitoring: sandbox.Monitoring{CollectLogs: sandbox.Bool(false), LogBufferSize: 2 * sandbox.MiB, CollectTraces: true},
		WASM:       sandbox.WASMConfig{CacheDir: "/var/cache/wasm", Deterministic: true},
		Pool:       sandbox.PoolConfig{Size: 4},
		Server: sandbox.ServerConfig{
			Listen: "127.0.0.1:9090", TokenFile: "/etc/token", MaxConcurrency: 8, MaxQueue: 32,
			MaxBodyBytes: 10 * sandbox.MiB, AllowHostNetwork: true, EnvAllowCeiling: []string{"LANG"},
			Defaults: sandbox.Execution{Timeout: sandbox.Duration(5 * time.Second)},
			Ceilings: sandbox.Execution{Memory: sandbox.GiB, Pids: 256},
		},
	}
}

const fullYAML = `
mode: subprocess
bestEffort: true
execution: {timeout: 10s, grace: 500ms, cpuTime: unlimited, cpus: 0.5, memory: 256MiB, pids: 64,
            maxOutput: 64KB, maxFileSize: unlimited, maxOpenFiles: 512}
permissions:
  env: {allow: [LANG, "MYAPP_*"], set: {FOO: bar}}
  filesystem:
    workdir: /srv/work
    workspaceSize: 128M
    outdir: /srv/out
    readOnly: [{source: /srv/data, target: /data}]
    readWrite:
      - source: /srv/cache
    tmpfs: [{target: /tmp, size: 64MiB}]
  network: loopback
  hostname: box
security: {seccomp: true, landlock: false, onViolation: kill, hostIdRange: "200000:4096"}
protocol: {maxMessageBytes: 8MiB, handshakeTimeout: 3s}
monitoring: {collectLogs: false, logBufferSize: 2097152, collectTraces: true}
wasm: {cacheDir: /var/cache/wasm, deterministic: true}
pool: {size: 4}
server: {listen: "127.0.0.1:9090", tokenFile: /etc/token, maxConcurrency: 8, maxQueue: 32, maxBodyBytes: 10MiB,
         allowHostNetwork: true, envAllowCeiling: [LANG], defaults: {timeout: 5s}, ceilings: {memory: 1GiB, pids: 256}}
`

const fullJSON = `{
  "mode": "subprocess", "bestEffort": true,
  "execution": {"timeout": "10s", "grace": "500ms", "cpuTime": "unlimited", "cpus": 0.5, "memory": "256MiB",
                "pids": 64, "maxOutput": "64KB", "maxFileSize": "unlimited", "maxOpenFiles": 512},
  "permissions": {
    "env": {"allow": ["LANG", "MYAPP_*"], "set": {"FOO": "bar"}},
    "filesystem": {"workdir": "/srv/work", "workspaceSize": 134217728, "outdir": "/srv/out",
                   "readOnly": [{"source": "/srv/data", "target": "/data"}], "readWrite": [{"source": "/srv/cache"}],
                   "tmpfs": [{"target": "/tmp", "size": "64MiB"}]},
    "network": "loopback", "hostname": "box"},
  "security": {"seccomp": true, "landlock": false, "onViolation": "kill", "hostIdRange": "200000:4096"},
  "protocol": {"maxMessageBytes": "8MiB", "handshakeTimeout": "3s"},
  "monitoring": {"collectLogs": false, "logBufferSize": "2MiB", "collectTraces": true},
  "wasm": {"cacheDir": "/var/cache/wasm", "deterministic": true},
  "pool": {"size": 4},
  "server": {"listen": "127.0.0.1:9090", "tokenFile": "/etc/token", "maxConcurrency": 8, "maxQueue": 32,
             "maxBodyBytes": "10MiB", "allowHostNetwork": true, "envAllowCeiling": ["LANG"],
             "defaults": {"timeout": "5s"}, "ceilings": {"memory": "1GiB", "pids": 256}}
}`

func TestParseConfigDocuments(t *testing.T) {
	want := fullConfig()
	for name, doc := range map[string]string{"yaml": fullYAML, "json": fullJSON} {
		t.Run(name, func(t *testing.T) {
			got, err := sandbox.ParseConfig([]byte(doc))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("ParseConfig:\n got %+v\nwant %+v", got, want)
			}
		})
	}
	// encoding/json reads the same JSON into the same Config (the library's
	// tags and the config file schema agree).
	var viaJSON sandbox.Config
	if err := json.Unmarshal([]byte(fullJSON), &viaJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(viaJSON, want) {
		t.Errorf("json.Unmarshal:\n got %+v\nwant %+v", viaJSON, want)
	}
	// What json.Marshal and yaml.Marshal write, ParseConfig reads back.
	for name, marshal := range map[string]func(any) ([]byte, error){"json": json.Marshal, "yaml": yaml.Marshal} {
		b, err := marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got, err := sandbox.ParseConfig(b)
		if err != nil {
			t.Fatalf("%s round trip: %v\n%s", name, err, b)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s round trip:\n got %+v\nwant %+v\n%s", name, got, want, b)
		}
	}
	// Empty documents and null mean all defaults.
	for _, doc := range []string{"", "\n", "# nothing\n", "null", "{}", "---\n"} {
		got, err := sandbox.ParseConfig([]byte(doc))
		if err != nil || !reflect.DeepEqual(got, sandbox.Config{}) {
			t.Errorf("ParseConfig(%q) = %+v, %v; want the zero Config", doc, got, err)
		}
	}
}

func TestParseConfigErrorsNameKeyPath(t *testing.T) {
	tests := []struct {
		doc, field, want string
	}{
		{"execution: {memory: banana}", "execution.memory", "want a size such as 512MiB"},
		{`{"execution": {"memory": "512mb"}}`, "execution.memory", `"MB"`},
		{"execution:\n  timeout: 30\n", "execution.timeout", "want a duration"},
		{"execution: {timeout: -1s}", "execution.timeout", "want a duration"},
		{"execution: {pids: x}", "execution.pids", "want a whole number"},
		{"execution: {pids: 1.5}", "execution.pids", "want a whole number"},
		{"execution: {cpus: lots}", "execution.cpus", "number of cores"},
		{"execution: {memory: [1, 2]}", "execution.memory", "single value"},
		{"execution: {memroy: 1GiB}", "execution.memroy", "unknown key"},
		{"executon: {}", "executon", "unknown key; known keys: bestEffort, execution"},
		{"permissions: {network: [none]}", "permissions.network", "single value"},
		{"permissions: {env: {allow: LANG}}", "permissions.env.allow", "want a list"},
		{"permissions: {env: {set: [FOO]}}", "permissions.env.set", "want a mapping"},
		{"permissions: {env: {set: {FOO: {a: b}}}}", "permissions.env.set.FOO", "single value"},
		{"permissions: {filesystem: {readOnly: [{source: /a, mode: ro}]}}", "permissions.filesystem.readOnly[0].mode", "unknown key"},
		{"permissions: {filesystem: {tmpfs: [{target: /tmp, size: big}]}}", "permissions.filesystem.tmpfs[0].size", "want a size"},
		{"permissions: {filesystem: {readOnly: [/srv/data]}}", "permissions.filesystem.readOnly[0]", "mapping of keys"},
		{"security: {seccomp: maybe}", "security.seccomp", "true or false"},
		{"security: {hostIdBase: 5}", "security.hostIdBase", "known keys: hostIdRange, landlock"},
		{"bestEffort: maybe", "bestEffort", "true or false"},
		{"pool: 3", "pool", "mapping of keys"},
		{"monitoring: {logBufferSize: 1mb}", "monitoring.logBufferSize", "want a size"},
		{"server: {ceilings: {memory: huge}}", "server.ceilings.memory", "want a size"},
		{`{"protocol": {"handshakeTimeout": 10}}`, "protocol.handshakeTimeout", "want a duration"},
		{"- a\n- b\n", "(document)", "mapping of keys"},
		{"execution: {pids: 0}", "execution.pids", "0 is not a limit"},
		{"execution: {timeout: 0s}", "execution.timeout", "0 is not a limit"},
		{`{"execution": {"memory": 0}}`, "execution.memory", "0 is not a limit"},
		{"server: {defaults: {maxOutput: 0}}", "server.defaults.maxOutput", "0 is not a limit"},
		{"execution:\n  memory: 64MiB\n  memory: 1GiB\n", "execution.memory", "duplicate key (line 3, first at line 2)"},
		{"permissions:\n  env:\n    set: {A: x, A: y}\n", "permissions.env.set.A", "duplicate key"},
		{"just a string", "(document)", "mapping of keys"},
	}
	for _, tt := range tests {
		_, err := sandbox.ParseConfig([]byte(tt.doc))
		if err == nil {
			t.Errorf("ParseConfig(%q) accepted it", tt.doc)
			continue
		}
		t.Run(tt.field, func(t *testing.T) { configError(t, err, tt.field, tt.want) })
	}
	// Syntax errors are errors too (no key path to name).
	for _, doc := range []string{"execution: {memory: 1GiB", `{"mode": "subprocess"`, "\tmode: x"} {
		if _, err := sandbox.ParseConfig([]byte(doc)); err == nil {
			t.Errorf("ParseConfig(%q) accepted broken syntax", doc)
		}
	}
}

// A config file that parses but holds a bad value fails in New, naming the
// same key path the file uses.
func TestLoadConfigThenNew(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte("permissions:\n  network: wifi\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := sandbox.LoadConfig(file)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Permissions.Network != "wifi" {
		t.Fatalf("network = %q", cfg.Permissions.Network)
	}
	_, err = sandbox.New(cfg)
	configError(t, err, "permissions.network", `"none", "loopback" or "host"`)

	// LoadConfig errors name the file and the key.
	if err := os.WriteFile(file, []byte("execution:\n  memory: banana\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = sandbox.LoadConfig(file)
	configError(t, err, "execution.memory", "want a size")
	if !strings.Contains(err.Error(), file) {
		t.Errorf("LoadConfig error %q does not name the file", err)
	}
	_, err = sandbox.LoadConfig(filepath.Join(dir, "missing.yaml"))
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "missing.yaml") {
		t.Errorf("LoadConfig(missing) = %v, want an error wrapping os.ErrNotExist naming the file", err)
	}
}

// FuzzParseConfig: decoding a config document never panics, and whatever
// decodes survives a JSON round trip unchanged.
func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{fullYAML, fullJSON, "", "null", "{}", "execution: {memory: banana}",
		"a: &x {b: 1}\nc: *x\n", "permissions: {filesystem: {readOnly: [&m {source: /a}, *m, *m]}}",
		"execution: {pids: 99999999999999999999999}", "security: {seccomp: !!binary aGVsbG8=}"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, err := sandbox.ParseConfig(b)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		j1, err := json.Marshal(cfg)
		if err != nil {
			t.Fatalf("json.Marshal of a parsed config: %v", err)
		}
		again, err := sandbox.ParseConfig(j1)
		if err != nil {
			t.Fatalf("ParseConfig(json.Marshal(cfg)) = %v\n%s", err, j1)
		}
		j2, err := json.Marshal(again)
		if err != nil {
			t.Fatal(err)
		}
		if string(j1) != string(j2) {
			t.Fatalf("round trip changed the config:\n%s\n%s", j1, j2)
		}
		// New never panics either, whatever the values.
		if cfg.Mode == sandbox.InProcess {
			if r, err := sandbox.New(cfg); err == nil {
				r.Close()
			}
		}
	})
}
