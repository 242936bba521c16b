#!/bin/sh
# Prints the dashboard's benchmark figures:
#   - View() time with 100 machines (Go benchmark, package tui),
#   - idle CPU of the real dashboard over 3 running busybox machines for
#     60 s (override with MACHINETOP_BENCH_IDLE=SECONDS),
#   - keypress-to-frame latency of the real dashboard on a PTY.
# The last two boot real machines (see tests/main_test.go); run from the
# repository root or from tests/.
set -eu
cd "$(dirname "$0")/.."
echo "== View() with 100 machines (target < 2 ms)"
go test -run '^$' -bench 'View100Machines|ViewUncached100Machines|SnapshotUpdate100Machines' -benchtime 200x ./tui/ | grep -E '^Benchmark'
echo "== real dashboard over 3 machines (targets: idle < 1 % of a core)"
MACHINETOP_BENCH=1 go test -count=1 -timeout 20m -run '^TestDashboardBench$' -v ./tests/ | grep -E '^BENCH|FAIL|ok '
