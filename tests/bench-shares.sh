#!/usr/bin/env bash
# Prints how fast shared directories are for an ordinary user over
# virtio-fs (virtiofsd as root of a user namespace) and over QEMU's 9p,
# in one run.
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINETOP_BENCH=1 go test -count=1 -timeout 40m -run '^TestBenchShares$' -v ./tests/ 2>&1 |
  tee /dev/stderr | sed -n '/== machinetop share benchmark/,$p' | grep -v '^\(---\|PASS\|ok\|===\)' >/dev/null
