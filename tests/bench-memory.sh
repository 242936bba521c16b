#!/usr/bin/env bash
# Prints, in one run, what a Debian machine with 4 GiB holds on the host
# and what each way of getting memory back returns: idle; right after a job
# that writes and rereads a 1.5 GiB file and frees a 2 GiB buffer; 30, 60
# and 120 s later with the default reclaim policy (gradual); after
# `machine reclaim`; after `machine restart`. Then whether reclaim costs a
# guest that keeps rereading its working set anything (policy off vs
# gradual), and the idle host overhead (host-held minus guest used) with
# and without the TCG translation cache cap, with a CPU-bound loop's time
# under each.
#
# usage: tests/bench-memory.sh [DEBIAN-IMAGE.tar]
#   without an image it makes one with tests/mkimage.sh (debootstrap, root).
#   MACHINETOP_BIN picks the machinetop binary (default bin/machinetop,
#   from `make build`).
# Figures are from one run on a shared host: noisy; compare within a run.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=$(realpath "${MACHINETOP_BIN:-bin/machinetop}")
work=$(mktemp -d)
chmod 755 "$work"
export MACHINETOP_HOME=$work/data
name=membench
cleanup() {
  "$bin" machine rm -f "$name" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

image=${1:-}
if [ -z "$image" ]; then
  image=$work/debian.tar
  tests/mkimage.sh debian "$image" >/dev/null
fi

mt() { "$bin" "$@"; }
mib() { echo $(( $1 / 1048576 )); }
# sample prints host-held, guest used and guest cache in MiB, and keeps
# them in HELD, USED, CACHE (bytes).
sample() {
  read -r HELD USED CACHE < <(mt machine stats --no-stream --format '{{.HostRSS}} {{.MemUsed}} {{.MemCache}}' "$name")
  printf '%-44s host-held %6s MiB   guest used %5s MiB   cache %5s MiB\n' "$1" "$(mib "$HELD")" "$(mib "$USED")" "$(mib "$CACHE")"
}
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }

mt image import "$image" membench:latest >/dev/null
t0=$(now)
mt machine create membench:latest -n "$name" --cpus 2 --memory 4G --home-mount none >/dev/null
mt machine run "$name" -- true
echo "== memory benchmark: Debian, 4 GiB, 2 CPUs, $(mt machine inspect -f '{{.Accelerator}}' "$name"), reclaim $(mt machine inspect -f '{{.MemoryReclaim}}' "$name") =="
echo "boot to first command: $(since "$t0") s"
sleep 30
sample "idle (30 s after boot)"
idle_held=$HELD idle_used=$USED

# The job: write and reread a 1.5 GiB file, then a 2 GiB buffer touched and
# freed (dd's block buffer, filled from /dev/zero).
mt machine run --root "$name" -- sh -c 'dd if=/dev/zero of=/var/tmp/big bs=1M count=1536 conv=fsync status=none &&
  cat /var/tmp/big > /dev/null && dd if=/dev/zero of=/dev/null bs=2047M count=1 status=none'
tj=$(now)
sample "after the job (1.5 GiB file, 2 GiB buffer)"
job_held=$HELD
for at in 30 60 120; do
  left=$(awk -v t="$tj" -v at="$at" -v n="$(now)" 'BEGIN { d = t + at - n; print (d > 0 ? d : 0) }')
  sleep "$left"
  sample "$at s later (gradual)"
  [ "$at" = 60 ] && held60=$HELD
done
excess=$(( job_held - idle_held ))
if [ "$excess" -gt 0 ]; then
  echo "back within 60 s of the job: $(( (job_held - held60) * 100 / excess ))% of the excess ($(mib "$excess") MiB)"
fi

# On demand, after the cache was filled again.
mt machine run --root "$name" -- sh -c 'cat /var/tmp/big > /dev/null'
sample "cache refilled"
tr=$(now)
echo "machine reclaim: $(mt machine reclaim "$name")  [$(since "$tr") s]"
sample "after machine reclaim"

# Restart, after the cache was filled again.
mt machine run --root "$name" -- sh -c 'cat /var/tmp/big > /dev/null'
sample "cache refilled"
tr=$(now)
mt machine restart "$name" >/dev/null
mt machine run "$name" -- true
echo "machine restart + first command: $(since "$tr") s"
sample "after restart"

# A working set kept hot: 256 MiB reread 6 times, 15 s apart (shorter than
# the idle time the policy waits for), with the policy off and gradual.
mt machine run --root "$name" -- sh -c 'head -c 256M /var/tmp/big > /var/tmp/ws; sync'
loop() {
  mt machine run --root "$name" -- sh -c 'cat /var/tmp/ws > /dev/null; t=0
    for i in 1 2 3 4 5 6; do sleep 15; s=$(date +%s%N); cat /var/tmp/ws > /dev/null; e=$(date +%s%N); t=$((t + (e - s) / 1000000)); done
    echo $t'
}
mt machine set "$name" memory-reclaim=off 2>/dev/null
off_ms=$(loop)
mt machine set "$name" memory-reclaim=gradual 2>/dev/null
on_ms=$(loop)
echo "rereading a 256 MiB working set 6×, 15 s apart: policy off ${off_ms} ms, gradual ${on_ms} ms (ratio $(awk -v a="$on_ms" -v b="$off_ms" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }'))"

# Idle overhead per machine under TCG, with and without the translation
# cache cap, and a CPU-bound loop's time under each.
cpu() {
  mt machine run "$name" -- sh -c 's=$(date +%s%N); i=0; while [ $i -lt 300000 ]; do i=$((i + 1)); done; e=$(date +%s%N); echo $(((e - s) / 1000000))'
}
for tb in default 0; do
  label="tb-size=128 MiB (machinetop's cap)"
  if [ "$tb" = 0 ]; then label="tb-size QEMU's default (no cap)"; fi
  if [ "$tb" = default ]; then env -u MACHINETOP_TCG_TB_SIZE "$bin" machine restart "$name" >/dev/null
  else MACHINETOP_TCG_TB_SIZE=0 "$bin" machine restart "$name" >/dev/null; fi
  mt machine run "$name" -- true
  ms=$(cpu)
  sleep 45
  sample "idle, $label"
  echo "  idle overhead (host-held - guest used): $(mib $(( HELD - USED ))) MiB; CPU-bound loop: $ms ms"
done
if [ "$(mt machine inspect -f '{{.Accelerator}}' "$name")" != kvm ]; then
  echo "KVM: not measured (the accelerator probe chose TCG on this host)"
fi
