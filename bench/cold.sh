#!/usr/bin/env bash
# The cold-start comparison in one command (docs/cli.md, sandbox bench):
#   1. `sandbox version` against an empty Go program built the same way,
#      alternated (bench/alternate), and the sum of their package
#      initialisers (GODEBUG=inittrace=1);
#   2. `sandbox bench`: plain exec, the library's cold sandbox, `sandbox run`
#      as a subprocess and bubblewrap --unshare-all, alternated, then pooled.
# Prints p50, p99 and cores-ms of each. RUNS (default 200) rounds each. Needs
# root (the sandbox's id mapping); installs bubblewrap with apt-get when it is
# missing and apt-get is there (NO_INSTALL=1: skip bwrap instead).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${RUNS:-200}

if ! command -v bwrap >/dev/null 2>&1 && [ -z "${NO_INSTALL:-}" ] && command -v apt-get >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bubblewrap >/dev/null; } ||
    echo "bench/cold.sh: bubblewrap could not be installed; sandbox bench skips it" >&2
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export CGO_ENABLED=0
go build -o "$tmp/sandbox" ./cmd/sandbox
go build -o "$tmp/empty" ./bench/empty
go build -o "$tmp/alternate" ./bench/alternate

echo "== sandbox version vs an empty Go program ($(go env GOVERSION), CGO_ENABLED=0)"
"$tmp/alternate" -n "$runs" -- empty="$tmp/empty" --- "sandbox-version=$tmp/sandbox" version

echo
echo "== package initialisers (GODEBUG=inittrace=1, mean of 20 starts): count, summed clock, costliest"
for b in "empty:$tmp/empty" "sandbox version:$tmp/sandbox version"; do
  name=${b%%:*} cmd=${b#*:}
  for _ in $(seq 20); do GODEBUG=inittrace=1 $cmd 2>&1 >/dev/null; done |
    awk -v name="$name" '/^init /{s+=$5; n++; p[$2]+=$5}
      END{printf "%-16s %4d inits %7.3f ms\n", name, n/20, s/20
          for (k in p) if (p[k]/20 >= 0.03) printf "  %7.3f ms  %s\n", p[k]/20, k | "sort -nr"}'
done
echo
echo "== cold start: sandbox bench --n $runs"
"$tmp/sandbox" bench --n "$runs"
