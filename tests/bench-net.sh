#!/usr/bin/env bash
# Prints guest -> host download throughput through the machine network next
# to QEMU's user network (one run, one machine, so the ratio compares like
# with like).
set -euo pipefail
cd "$(dirname "$0")/.."
MACHINETOP_BENCH=1 go test -count=1 -timeout 30m -run '^TestBenchNetwork$' -v ./tests/ 2>&1 |
  sed -n '/== machinetop network benchmark ==/,/ratio/p'
