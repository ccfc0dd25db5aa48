package mount

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// The sandbox user. The user namespace maps it to an unprivileged host id.
const (
	SandboxUID = 1000
	SandboxGID = 1000
)

// Well-known targets inside the sandbox.
const (
	Workspace = "/workspace"
	Out       = "/out"
)

// Default sizes; a zero Options field means the default.
const (
	DefaultTmpSize       = 64 << 20
	DefaultWorkspaceSize = 256 << 20
	DefaultShmSize       = 64 << 20
	DefaultTmpfsSize     = 64 << 20 // user --tmpfs without a size
	DefaultScanLimit     = 100_000
	DefaultPermScanLimit = 10_000

	rootSize   = 4 << 20 // the root holds directories, /etc files and symlinks only
	rootInodes = 4096
	devSize    = 64 << 10
	devInodes  = 64
)

// Network says whether the sandbox has a network; it decides resolv.conf.
type Network string

const (
	NetworkNone     Network = "none" // the zero value "" means none
	NetworkLoopback Network = "loopback"
	NetworkHost     Network = "host"
)

// Bind is a host path mounted at Target inside the sandbox.
type Bind struct {
	Source string `json:"source"`
	Target string `json:"target"`
}

// Tmpfs is a fresh tmpfs at Target; Size 0 means DefaultTmpfsSize, Inodes 0
// means one inode per 4 KiB of Size.
type Tmpfs struct {
	Target string `json:"target"`
	Size   int64  `json:"size,omitempty"`
	Inodes int64  `json:"inodes,omitempty"`
}

// Options describes the filesystem of one sandbox. Host paths must be
// absolute. The zero value is a valid configuration: no network, default
// sizes, a tmpfs workspace, no user mounts.
type Options struct {
	Network  Network
	Hostname string // default "sandbox"; written to /etc/hosts and /etc/hostname

	TmpSize       int64 // /tmp; default DefaultTmpSize
	WorkspaceSize int64 // /workspace when Workdir is empty; default DefaultWorkspaceSize
	ShmSize       int64 // /dev/shm; default DefaultShmSize

	// Workdir is a host directory bound read-write at /workspace; a .git in
	// it is bound read-only on top. See PrepareHostDir.
	Workdir string
	// Outdir is a host directory bound read-write at /out.
	Outdir string

	ReadOnly  []Bind  // user --ro
	ReadWrite []Bind  // user --rw
	Tmpfs     []Tmpfs // user --tmpfs

	// Special are read-only binds the engine itself needs (handler
	// bootstraps, a plugin root). They are trusted: not scanned for sockets.
	Special []Bind

	// AllowSockets accepts user mounts whose tree holds unix sockets.
	AllowSockets bool
	// ScanLimit bounds the entries walked per source looking for sockets;
	// default DefaultScanLimit. A larger tree is refused (ErrScanLimit).
	ScanLimit int

	// IDMap marks every per-run bind a Tree: the supervisor opens its
	// source itself and id-maps it so that the source's host owner and
	// group are the sandbox user (Plan.OpenTrees); the init only moves it
	// into place. NewPlan then also checks, for each source, what the
	// sandbox user could not read there (ErrUnreadable).
	IDMap bool
	// PermScanLimit bounds the entries whose permissions are checked per
	// source when IDMap is set; default DefaultPermScanLimit. Entries
	// beyond it are not checked: the kernel decides there, as for any
	// file changed after NewPlan.
	PermScanLimit int
}

// Kind is what one Mount step does.
type Kind string

const (
	KindBind     Kind = "bind"     // bind host Source (recursively) at Target
	KindTmpfs    Kind = "tmpfs"    // fresh tmpfs at Target
	KindProc     Kind = "proc"     // new procfs for the pid namespace
	KindMask     Kind = "mask"     // hide Target: /dev/null over a file, an empty read-only tmpfs over a directory; skipped when absent
	KindReadOnly Kind = "readonly" // rebind existing Target onto itself read-only; skipped when absent
	KindSymlink  Kind = "symlink"  // Target -> Link
	KindFile     Kind = "file"     // a file with Data, read-only once the root is sealed
	KindRebind   Kind = "rebind"   // bind the sandbox's own directory Source (a path inside the new root) at Target
)

// Mount is one step of a Plan. Every mount is nosuid; every mount is nodev
// unless Dev (device nodes only).
type Mount struct {
	Kind     Kind   `json:"kind"`
	Target   string `json:"target"`
	Source   string `json:"source,omitempty"` // canonical host path (KindBind)
	Dir      bool   `json:"dir,omitempty"`    // Source is a directory
	ReadOnly bool   `json:"readOnly,omitempty"`
	NoExec   bool   `json:"noExec,omitempty"`
	Dev      bool   `json:"dev,omitempty"`
	Size     int64  `json:"size,omitempty"` // tmpfs bytes
	Inodes   int64  `json:"inodes,omitempty"`
	Mode     uint32 `json:"mode,omitempty"` // tmpfs root / file permission bits (with sticky)
	UID      int    `json:"uid,omitempty"`  // tmpfs owner inside
	GID      int    `json:"gid,omitempty"`
	Link     string `json:"link,omitempty"`
	Data     []byte `json:"data,omitempty"`
	// Tree (KindBind): Source arrives as a detached, id-mapped mount made
	// by the supervisor (Plan.OpenTrees), not opened by the init.
	Tree bool `json:"tree,omitempty"`
}

// Plan is the serialisable description of a sandbox filesystem. Base is
// everything known before the command (phase 1, prepared ahead by a warm
// pool); Run holds the per-run mounts (phase 2). BaseID fingerprints Base so
// a prepared sandbox is only finished with a plan built for it.
type Plan struct {
	Base   []Mount `json:"base"`
	Run    []Mount `json:"run"`
	BaseID string  `json:"baseId"`
}

// system directories bound from the host when present; /usr is required.
var systemDirs = []string{"/usr", "/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"}

// /etc entries bound read-only when the host has them (certificates, and the
// alternatives links Debian-like systems route /usr/bin/awk and friends through).
var etcDirs = []string{"/etc/ssl", "/etc/ca-certificates", "/etc/pki", "/etc/alternatives"}

// procMasked are the /proc entries hidden from the sandbox. cmdline is the
// host's kernel command line: boot parameters, and on some hosts the
// arguments of the host's own agent.
var procMasked = []string{
	"acpi", "asound", "interrupts", "kcore", "kallsyms", "keys", "key-users", "kmsg",
	"latency_stats", "modules", "sched_debug", "scsi", "slabinfo", "sysrq-trigger",
	"timer_list", "timer_stats", "vmallocinfo", "iomem", "zoneinfo", "config.gz",
	"kpagecount", "kpageflags", "kpagecgroup", "cmdline",
}

// procReadOnly are the /proc directories made read-only.
var procReadOnly = []string{"sys", "bus", "fs", "irq"}

var devNodes = []string{"null", "zero", "full", "random", "urandom"}

// NewPlan validates opts and builds the plan. It reads the host (to find
// system directories, canonicalise sources and scan them for sockets) but
// changes nothing. Errors are *OptionError naming the field.
func NewPlan(opts Options) (*Plan, error) {
	o := opts
	if o.Hostname == "" {
		o.Hostname = "sandbox"
	}
	if o.ScanLimit <= 0 {
		o.ScanLimit = DefaultScanLimit
	}
	if o.PermScanLimit <= 0 {
		o.PermScanLimit = DefaultPermScanLimit
	}
	switch o.Network {
	case "", NetworkNone, NetworkLoopback, NetworkHost:
	default:
		return nil, &OptionError{"Network", string(o.Network), fmt.Errorf("want none, loopback or host")}
	}
	if strings.ContainsAny(o.Hostname, " \t\n/") || len(o.Hostname) > 64 {
		return nil, &OptionError{"Hostname", o.Hostname, fmt.Errorf("not a host name")}
	}
	var err error
	if o.TmpSize, err = size("TmpSize", o.TmpSize, DefaultTmpSize); err != nil {
		return nil, err
	}
	if o.WorkspaceSize, err = size("WorkspaceSize", o.WorkspaceSize, DefaultWorkspaceSize); err != nil {
		return nil, err
	}
	if o.ShmSize, err = size("ShmSize", o.ShmSize, DefaultShmSize); err != nil {
		return nil, err
	}

	p := &Plan{}
	if p.Base, err = base(o); err != nil {
		return nil, err
	}
	if p.Run, err = run(o); err != nil {
		return nil, err
	}
	b, _ := json.Marshal(p.Base)
	sum := sha256.Sum256(b)
	p.BaseID = hex.EncodeToString(sum[:16])
	return p, nil
}

func size(name string, v, def int64) (int64, error) {
	switch {
	case v == 0:
		return def, nil
	case v < 4096 || v > 1<<40:
		return 0, &OptionError{name, fmt.Sprint(v), fmt.Errorf("size must be between 4 KiB and 1 TiB")}
	}
	return v, nil
}

func inodes(size int64) int64 { return max(size/4096, 1024) }

func tmpfs(target string, size int64, mode uint32) Mount {
	return Mount{Kind: KindTmpfs, Target: target, Size: size, Inodes: inodes(size), Mode: mode,
		UID: SandboxUID, GID: SandboxGID}
}

// base is phase 1: it depends only on configuration, never on a run.
func base(o Options) ([]Mount, error) {
	var ms []Mount
	for _, d := range systemDirs {
		m, ok, err := systemDir("", d)
		if err != nil {
			return nil, err
		}
		if !ok {
			if d == "/usr" {
				return nil, &OptionError{"system", d, fmt.Errorf("host has no /usr")}
			}
			continue
		}
		ms = append(ms, m)
	}

	ms = append(ms, etc(o)...)

	ms = append(ms, Mount{Kind: KindProc, Target: "/proc"})
	for _, e := range procMasked {
		ms = append(ms, Mount{Kind: KindMask, Target: "/proc/" + e})
	}
	for _, e := range procReadOnly {
		ms = append(ms, Mount{Kind: KindReadOnly, Target: "/proc/" + e})
	}

	// /dev itself can be nodev: each device is its own bind mount, whose
	// flags come from the host's /dev, not from the tmpfs under it.
	ms = append(ms, Mount{Kind: KindTmpfs, Target: "/dev", Size: devSize, Inodes: devInodes, Mode: 0o755, NoExec: true})
	for _, d := range devNodes {
		ms = append(ms, Mount{Kind: KindBind, Source: "/dev/" + d, Target: "/dev/" + d, Dev: true, NoExec: true})
	}
	for _, l := range [][2]string{{"fd", "/proc/self/fd"}, {"stdin", "/proc/self/fd/0"},
		{"stdout", "/proc/self/fd/1"}, {"stderr", "/proc/self/fd/2"}} {
		ms = append(ms, Mount{Kind: KindSymlink, Target: "/dev/" + l[0], Link: l[1]})
	}
	shm := tmpfs("/dev/shm", o.ShmSize, 0o1777)
	shm.NoExec = true
	ms = append(ms, shm, tmpfs("/tmp", o.TmpSize, 0o1777), tmpfs(Workspace, o.WorkspaceSize, 0o755))
	return ms, nil
}

// systemDir decides how the host system directory d (looked up under root,
// "" but in tests)
// appears: a read-only bind, or the same symlink when it points into /usr
// (merged /usr), so /bin/sh keeps working without a second bind.
func systemDir(root, d string) (Mount, bool, error) {
	path := root + d
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return Mount{}, false, nil
	}
	if err != nil {
		return Mount{}, false, &OptionError{"system", d, err}
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		link, err := os.Readlink(path)
		if err != nil {
			return Mount{}, false, &OptionError{"system", d, err}
		}
		abs := link
		if !filepath.IsAbs(abs) {
			abs = filepath.Join(filepath.Dir(d), link)
		}
		if within(filepath.Clean(abs), "/usr") {
			return Mount{Kind: KindSymlink, Target: d, Link: link}, true, nil
		}
		// Anything else: bind what it resolves to, at the same place.
		real, err := filepath.EvalSymlinks(path)
		if err != nil {
			return Mount{}, false, nil // dangling on the host: absent here too
		}
		if fi, err := os.Stat(real); err != nil || !fi.IsDir() || refusedSource(real) {
			return Mount{}, false, nil
		}
		return Mount{Kind: KindBind, Source: real, Target: d, Dir: true, ReadOnly: true}, true, nil
	}
	if !fi.IsDir() {
		return Mount{}, false, nil
	}
	return Mount{Kind: KindBind, Source: path, Target: d, Dir: true, ReadOnly: true}, true, nil
}

func etc(o Options) []Mount {
	passwd := "root:x:0:0:root:/root:/bin/sh\n" +
		fmt.Sprintf("sandbox:x:%d:%d:sandbox:%s:/bin/sh\n", SandboxUID, SandboxGID, Workspace) +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"
	group := "root:x:0:\n" + fmt.Sprintf("sandbox:x:%d:\n", SandboxGID) + "nogroup:x:65534:\n"
	hosts := "127.0.0.1\tlocalhost " + o.Hostname + "\n::1\tlocalhost ip6-localhost ip6-loopback\n"
	ms := []Mount{
		{Kind: KindFile, Target: "/etc/passwd", Data: []byte(passwd), Mode: 0o644},
		{Kind: KindFile, Target: "/etc/group", Data: []byte(group), Mode: 0o644},
		{Kind: KindFile, Target: "/etc/hosts", Data: []byte(hosts), Mode: 0o644},
		{Kind: KindFile, Target: "/etc/hostname", Data: []byte(o.Hostname + "\n"), Mode: 0o644},
		{Kind: KindFile, Target: "/etc/nsswitch.conf", Mode: 0o644,
			Data: []byte("passwd: files\ngroup: files\nshadow: files\nhosts: files dns\nnetworks: files\nprotocols: files\nservices: files\n")},
	}
	files := []string{"/etc/ld.so.cache"}
	if o.Network == NetworkHost {
		// Only a sandbox sharing the host network can reach the host's resolvers.
		files = append(files, "/etc/resolv.conf")
	}
	for _, f := range files {
		if real, err := filepath.EvalSymlinks(f); err == nil && !refusedSource(real) {
			if fi, err := os.Stat(real); err == nil && fi.Mode().IsRegular() {
				ms = append(ms, Mount{Kind: KindBind, Source: real, Target: f, ReadOnly: true})
			}
		}
	}
	for _, d := range etcDirs {
		if real, err := filepath.EvalSymlinks(d); err == nil && !refusedSource(real) {
			if fi, err := os.Stat(real); err == nil && fi.IsDir() {
				ms = append(ms, Mount{Kind: KindBind, Source: real, Target: d, Dir: true, ReadOnly: true})
			}
		}
	}
	// The zone link usually points into /usr/share/zoneinfo, which is bound.
	if link, err := os.Readlink("/etc/localtime"); err == nil && within(filepath.Clean(link), "/usr") {
		ms = append(ms, Mount{Kind: KindSymlink, Target: "/etc/localtime", Link: link})
	}
	return ms
}

// run is phase 2: the per-run mounts, ordered so a parent is mounted before
// anything nested in it (a stable sort keeps the caller's order otherwise).
func run(o Options) ([]Mount, error) {
	var ms []Mount
	seen := map[string]string{}
	target := func(opt, t string) error {
		if err := checkTarget(t); err != nil {
			return &OptionError{opt, t, err}
		}
		if prev, dup := seen[t]; dup {
			return &OptionError{opt, t, fmt.Errorf("%w: already the target of %s", ErrTarget, prev)}
		}
		seen[t] = opt
		return nil
	}
	host := func(opt, src string, wantDir, scan, writable bool) (string, bool, error) {
		real, dir, err := checkSource(src, wantDir, o.AllowSockets)
		if err != nil {
			return "", false, &OptionError{opt, src, err}
		}
		sc := scanOpts{limit: o.ScanLimit, sockets: scan && !o.AllowSockets}
		if o.IDMap {
			if sc.owner, err = treeOwner(real, writable); err != nil {
				return "", false, &OptionError{opt, src, err}
			}
			sc.permLimit = o.PermScanLimit
		}
		if sc.sockets || sc.owner != nil {
			if err := scanTree(real, sc); err != nil {
				return "", false, &OptionError{opt, src, err}
			}
		}
		return real, dir, nil
	}

	if o.Workdir != "" {
		seen[Workspace] = "Workdir"
		real, _, err := host("Workdir", o.Workdir, true, true, true)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Mount{Kind: KindBind, Source: real, Target: Workspace, Dir: true, Tree: o.IDMap})
		// A checkout's history stays read-only: a run must not rewrite hooks
		// or config that the host's git would later execute.
		git := filepath.Join(real, ".git")
		if fi, err := os.Lstat(git); err == nil && (fi.IsDir() || fi.Mode().IsRegular()) {
			ms = append(ms, Mount{Kind: KindBind, Source: git, Target: Workspace + "/.git", Dir: fi.IsDir(), ReadOnly: true, Tree: o.IDMap})
		}
	}
	if o.Outdir != "" {
		seen[Out] = "Outdir"
		real, _, err := host("Outdir", o.Outdir, true, true, true)
		if err != nil {
			return nil, err
		}
		ms = append(ms, Mount{Kind: KindBind, Source: real, Target: Out, Dir: true, Tree: o.IDMap})
	}
	binds := []struct {
		name string
		list []Bind
		ro   bool
		scan bool
	}{{"ReadOnly", o.ReadOnly, true, true}, {"ReadWrite", o.ReadWrite, false, true}, {"Special", o.Special, true, false}}
	for _, set := range binds {
		for i, b := range set.list {
			opt := fmt.Sprintf("%s[%d]", set.name, i)
			if err := target(opt+".Target", b.Target); err != nil {
				return nil, err
			}
			real, dir, err := host(opt+".Source", b.Source, false, set.scan, !set.ro)
			if err != nil {
				return nil, err
			}
			ms = append(ms, Mount{Kind: KindBind, Source: real, Target: b.Target, Dir: dir, ReadOnly: set.ro, Tree: o.IDMap})
		}
	}
	for i, t := range o.Tmpfs {
		opt := fmt.Sprintf("Tmpfs[%d]", i)
		if err := target(opt+".Target", t.Target); err != nil {
			return nil, err
		}
		sz, err := size(opt+".Size", t.Size, DefaultTmpfsSize)
		if err != nil {
			return nil, err
		}
		m := tmpfs(t.Target, sz, 0o755)
		if t.Inodes < 0 {
			return nil, &OptionError{opt + ".Inodes", fmt.Sprint(t.Inodes), fmt.Errorf("negative")}
		}
		if t.Inodes > 0 {
			m.Inodes = t.Inodes
		}
		ms = append(ms, m)
	}
	slices.SortStableFunc(ms, func(a, b Mount) int { return depth(a.Target) - depth(b.Target) })
	return ms, nil
}

func depth(p string) int { return strings.Count(p, "/") }

// within reports whether p is root or below it (both clean and absolute).
func within(p, root string) bool {
	return p == root || strings.HasPrefix(p, root+"/")
}

func checkTarget(t string) error {
	switch {
	case !filepath.IsAbs(t):
		return fmt.Errorf("%w: not absolute", ErrTarget)
	case filepath.Clean(t) != t:
		return fmt.Errorf("%w: not clean (want %s)", ErrTarget, filepath.Clean(t))
	case t == "/":
		return fmt.Errorf("%w: the root", ErrTarget)
	case within(t, "/proc"), within(t, "/dev"):
		return fmt.Errorf("%w: /proc and /dev belong to the sandbox", ErrTarget)
	case within(t, "/.oldroot"):
		return fmt.Errorf("%w: reserved for set-up", ErrTarget)
	}
	return nil
}

func refusedSource(p string) bool {
	return p == "/" || within(p, "/proc") || within(p, "/sys") || within(p, "/dev")
}

// checkSource canonicalises a host source so the child can open it without
// following any symlink, and refuses the kernel's own filesystems — as
// written and as resolved (a symlink to /proc/self/root is still /proc).
func checkSource(src string, wantDir, allowSockets bool) (string, bool, error) {
	if !filepath.IsAbs(src) {
		return "", false, fmt.Errorf("%w: not absolute", ErrSource)
	}
	if refusedSource(filepath.Clean(src)) {
		return "", false, fmt.Errorf("%w: /, /proc, /sys and /dev are never mounted", ErrSource)
	}
	real, err := filepath.EvalSymlinks(src)
	if err != nil {
		return "", false, err
	}
	if refusedSource(real) {
		return "", false, fmt.Errorf("%w: resolves to %s", ErrSource, real)
	}
	fi, err := os.Stat(real)
	if err != nil {
		return "", false, err
	}
	switch {
	case wantDir && !fi.IsDir():
		return "", false, fmt.Errorf("%w: not a directory", ErrSource)
	case !fi.IsDir() && !fi.Mode().IsRegular():
		if fi.Mode()&os.ModeSocket != 0 {
			if allowSockets {
				return real, false, nil
			}
			return "", false, fmt.Errorf("%w: %s", ErrSocket, real)
		}
		return "", false, fmt.Errorf("%w: neither a directory nor a regular file", ErrSource)
	}
	return real, fi.IsDir(), nil
}
