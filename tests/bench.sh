#!/usr/bin/env bash
# Prints machinetop's boot and `run` latency next to raw QEMU's direct-kernel
# boot on this host (one run, so the ratios compare like with like).
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINETOP_BENCH=1 go test -count=1 -timeout 40m -run '^TestBenchBoot$' -v ./tests/ 2>&1 |
  tee /dev/stderr | sed -n '/== machinetop boot benchmark ==/,$p' | grep -v '^\(---\|PASS\|ok\|===\)' >/dev/null
