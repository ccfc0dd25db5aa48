#!/usr/bin/env bash
# Compares `sandbox run -- /bin/true` with bubblewrap at comparable isolation
# (all namespaces; bubblewrap enforces no cgroup, seccomp or Landlock), the
# two alternated over many runs, and prints the median of each and their
# ratio. Needs root (the sandbox's id mapping) and installs bubblewrap with
# apt-get when it is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-200}

if ! command -v bwrap >/dev/null 2>&1; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null
fi
bin=$(mktemp -d)/sandbox
trap 'rm -rf "$(dirname "$bin")"' EXIT
CGO_ENABLED=0 go build -o "$bin" ./cmd/sandbox

bwrap_cmd=(bwrap --unshare-all --die-with-parent --new-session --ro-bind /usr /usr
  --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --symlink usr/sbin /sbin
  --proc /proc --dev /dev --tmpfs /tmp -- /bin/true)
sandbox_cmd=("$bin" run -- /bin/true)

# Warm up both (page cache).
"${bwrap_cmd[@]}"; "${sandbox_cmd[@]}"

python3 - "$runs" "${#bwrap_cmd[@]}" "${bwrap_cmd[@]}" "${sandbox_cmd[@]}" <<'PY'
import subprocess, sys, time, statistics
runs = int(sys.argv[1]); nb = int(sys.argv[2])
bw, sb = sys.argv[3:3 + nb], sys.argv[3 + nb:]
t = {"bwrap": [], "sandbox": []}
for i in range(runs):
    for name, cmd in (("bwrap", bw), ("sandbox", sb)) if i % 2 == 0 else (("sandbox", sb), ("bwrap", bw)):
        s = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
        t[name].append((time.perf_counter() - s) * 1000)
mb, ms = statistics.median(t["bwrap"]), statistics.median(t["sandbox"])
print(f"{runs} alternated runs of /bin/true")
print(f"bwrap --unshare-all   median {mb:7.2f} ms")
print(f"sandbox run           median {ms:7.2f} ms")
print(f"ratio sandbox/bwrap   {ms / mb:.2f}x")
PY
