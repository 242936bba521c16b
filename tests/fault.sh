#!/usr/bin/env bash
# The fault matrix: injects each fault FAULT_N times (default 20) into busybox
# machines driven through the CLI and prints a table: fault, trials, passed,
# and what each trial checked. Exits 1 when any trial failed.
#
#   tests/fault.sh                    # or: make fault
#   FAULT_N=3 tests/fault.sh          # fewer trials
#   FAULT_ONLY=qemu-kill tests/fault.sh   # one fault (names as in the table)
#
# Needs bin/machinetop and the guest binaries (make build; $FAULT_BIN names
# another directory), a busybox image tar (tests/mkimage.sh busybox; made in
# the scratch directory when $FAULT_IMAGE is not given), QEMU and e2fsck.
# Every machine lives in a scratch data directory that is removed at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${FAULT_N:-20}
BIN=${FAULT_BIN:-$PWD/bin}
scratch=$(mktemp -d)
export MACHINETOP_HOME=$scratch/data
export PATH=$BIN:$PATH
mt() { machinetop "$@"; }
log=$scratch/fault.log
cleanup() {
	for m in $(mt machine ls -q 2>/dev/null); do mt machine rm -f "$m" >/dev/null 2>&1; done
	rm -rf "$scratch"
}
trap cleanup EXIT

img=${FAULT_IMAGE:-}
if [ -z "$img" ]; then
	img=$scratch/busybox.tar
	tests/mkimage.sh busybox "$img" >>"$log" 2>&1 || { echo "fault: making the busybox image failed; see tests/mkimage.sh" >&2; exit 1; }
fi
mt image import "$img" busybox:fault >>"$log" 2>&1 || { echo "fault: image import failed" >&2; exit 1; }

declare -A passed checks
order=()
# trial NAME CHECKS FUNCTION: runs FUNCTION once, counting a pass when it returns 0.
trial() {
	local name=$1 what=$2 fn=$3
	[ -n "${FAULT_ONLY:-}" ] && [ "$FAULT_ONLY" != "$name" ] && return
	if [ -z "${checks[$name]:-}" ]; then order+=("$name"); passed[$name]=0; fi
	checks[$name]=$what
	echo "== $name" >>"$log"
	# Not in an if: errexit holds in the subshell only outside conditions.
	(set -e; "$fn") >>"$log" 2>&1
	if [ $? = 0 ]; then
		passed[$name]=$((passed[$name] + 1))
	else
		echo "fault: $name trial failed (log: $log)" >&2
		FAILED=1
	fi
}
FAILED=0

# sup_pid NAME waits (up to 60 s) until NAME has a supervisor and prints its PID.
sup_pid() {
	local p
	for _ in $(seq 600); do
		p=$(mt machine inspect -f '{{.SupervisorPID}}' "$1" 2>/dev/null || true)
		if [ -n "$p" ] && [ "$p" != 0 ]; then echo "$p"; return 0; fi
		sleep 0.1
	done
	return 1
}
state() { mt machine inspect -f '{{.State}}' "$1"; }
disk() { echo "$MACHINETOP_HOME/machines/$1/disk.img"; }
fresh() { mt machine rm -f "$1" >/dev/null 2>&1 || true; mt machine create busybox:fault -n "$1" --memory 256M --cpus 1 --disk 1G --home-mount none; }

mt machine create busybox:fault -n f1 --memory 256M --cpus 1 --disk 1G --home-mount none >>"$log" 2>&1
mt machine stop f1 >>"$log" 2>&1

supervisor_start() {
	mt machine stop f1
	mt machine start f1 &
	local cli=$!
	kill -9 "$(sup_pid f1)"
	wait $cli || true
	mt machine start f1
	[ "$(mt machine run f1 -- echo ok)" = ok ]
}
supervisor_run() {
	mt machine start f1
	local rc=0
	mt machine run f1 -- sh -c 'echo started; sleep 20' >"$scratch/run.out" 2>"$scratch/run.err" &
	local cli=$!
	for _ in $(seq 100); do grep -q started "$scratch/run.out" && break; sleep 0.1; done
	kill -9 "$(sup_pid f1)"
	wait $cli || rc=$?
	[ $rc = 255 ] || { echo "run exited $rc, want 255"; cat "$scratch/run.err"; return 1; }
	grep -q "may still be running" "$scratch/run.err"
	# A new supervisor adopts the machine; it is usable.
	[ "$(mt machine run f1 -- echo ok)" = ok ]
}
qemu_kill() {
	mt machine start f1
	mt machine run f1 -- sh -c 'dd if=/dev/urandom of=/synced bs=1M count=8 2>/dev/null; sync'
	local sum
	sum=$(mt machine run f1 -- md5sum /synced | cut -d' ' -f1)
	mt machine run f1 -- sh -c 'while :; do dd if=/dev/zero of=/scratch bs=1M count=32 2>/dev/null; done' &
	local cli=$!
	sleep 2
	kill -9 "$(mt machine inspect -f '{{.VMPID}}' f1)"
	wait $cli || true
	for _ in $(seq 100); do [ "$(state f1)" = stopped ] && break; sleep 0.1; done
	[ "$(state f1)" = stopped ] || { echo "state $(state f1) after QEMU died"; return 1; }
	mt machine start f1
	[ "$(mt machine run f1 -- md5sum /synced | cut -d' ' -f1)" = "$sum" ] || { echo "synced data lost"; return 1; }
	mt machine stop f1
	e2fsck -fn "$(disk f1)"
}
cli_create() {
	mt machine rm -f fc >/dev/null 2>&1 || true
	mt machine create busybox:fault -n fc --memory 256M --cpus 1 --disk 1G --home-mount none --no-boot &
	local cli=$!
	sleep "0.$((RANDOM % 10))"
	kill -9 $cli 2>/dev/null || true
	wait $cli || true
	# Either no machine, or a whole one that starts.
	if mt machine ls -q | grep -qx fc; then
		mt machine start fc
		[ "$(mt machine run fc -- echo ok)" = ok ]
		mt machine rm -f fc
	fi
	! mt machine ls -q | grep -qx fc
	[ ! -e "$MACHINETOP_HOME/machines/fc" ]
}
parallel_start() {
	mt machine stop f1
	local pids=() rc=0
	for _ in 1 2 3; do mt machine start f1 & pids+=($!); done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ $rc = 0 ] && [ "$(mt machine run f1 -- echo ok)" = ok ]
}
corrupt_config() {
	fresh fb >/dev/null
	mt machine stop fb
	local cfg=$MACHINETOP_HOME/machines/fb/config.json
	head -c $(( $(stat -c %s "$cfg") / 2 )) "$cfg" >"$cfg.t" && mv "$cfg.t" "$cfg"
	mt machine ls >"$scratch/ls.out"
	grep fb "$scratch/ls.out" | grep -q broken
	[ "$(mt machine run f1 -- echo ok)" = ok ]
	mt machine rm -f fb
	! mt machine ls -q | grep -qx fb
}
truncated_state() {
	mt machine stop f1
	local d=$MACHINETOP_HOME/machines/f1 f
	for f in guest.json ssh-port "$MACHINETOP_HOME/state.json"; do
		case $f in /*) ;; *) f=$d/$f ;; esac
		[ -e "$f" ] && : >"$f"
	done
	mt machine ls >/dev/null
	mt machine start f1
	[ "$(mt machine run f1 -- echo ok)" = ok ]
}

for _ in $(seq "$N"); do
	trial supervisor-kill-start "supervisor kill -9 during start; the next start works, run works" supervisor_start
	trial supervisor-kill-run "supervisor kill -9 during run; run exits 255 saying so; the machine is adopted and runs commands" supervisor_run
	trial qemu-kill "QEMU kill -9 during writes; state stopped, next start works, synced file intact, e2fsck -fn clean" qemu_kill
	trial cli-kill-create "CLI kill -9 during create; no half-made machine (none, or one that starts)" cli_create
	trial parallel-start "3 parallel starts of a stopped machine all exit 0; run works" parallel_start
	trial corrupt-config "half of config.json cut; ls lists it broken, others run, rm removes it" corrupt_config
	trial truncated-state "guest.json, ssh-port, state.json emptied; ls, start and run work" truncated_state
done

printf '%-22s %6s %6s  %s\n' FAULT TRIALS PASSED CHECKED
for name in "${order[@]}"; do
	printf '%-22s %6d %6d  %s\n' "$name" "$N" "${passed[$name]}" "${checks[$name]}"
done
exit $FAILED
