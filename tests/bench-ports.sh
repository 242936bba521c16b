#!/usr/bin/env bash
# Prints a forwarded port's throughput (both ways) and connection set-up
# latency next to the same transfers inside the guest, over its loopback
# (one run, so the ratios compare like with like).
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINETOP_BENCH=1 go test -count=1 -timeout 30m -run '^TestBenchPorts$' -v ./tests/ 2>&1 |
  tee /dev/stderr | sed -n '/== machinetop port forwarding benchmark/,$p' | grep -v '^\(---\|PASS\|ok\|===\)' >/dev/null
