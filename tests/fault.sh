#!/usr/bin/env bash
# The fault matrix: injects each fault FAULT_N times (default 20) into busybox
# machines driven through the CLI, as a user would, and prints a table: for
# each fault, its runs and how many of them
#   recovered   the machine (or the CLI) came back to a usable state;
#   data        kept what the trial wrote and synced before the fault, and
#               left host files alone ("-": the trial writes nothing);
#   fsck        left a disk that `e2fsck -fn` finds clean ("-": not checked);
#   clean       left no leftovers: no machinetop, QEMU or virtiofsd process
#               of a machine that is not running, no orphaned helper process,
#               no runtime directory of a machine that is not running.
# Exits 1 when any run failed any column.
#
#   tests/fault.sh                    # or: make fault
#   FAULT_N=3 tests/fault.sh          # fewer runs
#   FAULT_ONLY=qemu-kill tests/fault.sh   # one fault (names as in the table)
#
# Needs bin/machinetop and the guest binaries (make build; $FAULT_BIN names
# another directory), a busybox image tar (tests/mkimage.sh busybox; made in
# the scratch directory when $FAULT_IMAGE is not given), QEMU and e2fsck.
# Every machine lives in a scratch data directory with its own runtime
# directory; both are removed at the end. The data directory lies inside a
# scratch home that one machine shares, as the default --home-mount rw does.
set -uo pipefail
cd "$(dirname "$0")/.."
N=${FAULT_N:-20}
BIN=${FAULT_BIN:-$PWD/bin}
scratch=$(mktemp -d)
home=$scratch/home
export MACHINETOP_HOME=$home/.local/share/machinetop
export XDG_RUNTIME_DIR=$scratch/run
mkdir -p -m 0700 "$XDG_RUNTIME_DIR" "$home"
rundir=$XDG_RUNTIME_DIR/machinetop
export PATH=$BIN:$PATH
mt() { machinetop "$@"; }
log=${FAULT_LOG:-$scratch/fault.log}
res=$scratch/results
cleanup() {
	for m in $(mt machine ls -q 2>/dev/null); do mt machine rm -f "$m" >/dev/null 2>&1; done
	# The machine network outlives its last machine by its idle time; it
	# has nothing to serve once the data directory goes.
	for p in $(ours); do kill "$p" 2>/dev/null; done
	rm -rf "$scratch"
}
trap cleanup EXIT

# ours prints the PIDs of machinetop, QEMU and virtiofsd processes that
# belong to this matrix's data directory (they inherit MACHINETOP_HOME).
ours() {
	local p exe
	for p in /proc/[0-9]*; do
		grep -qxzF "MACHINETOP_HOME=$MACHINETOP_HOME" "$p/environ" 2>/dev/null || continue
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		case ${exe##*/} in machinetop | qemu-system-* | virtiofsd) echo "${p#/proc/}" ;; esac
	done
}

img=${FAULT_IMAGE:-}
if [ -z "$img" ]; then
	img=$scratch/busybox.tar
	tests/mkimage.sh busybox "$img" >>"$log" 2>&1 || { echo "fault: making the busybox image failed; see tests/mkimage.sh" >&2; exit 1; }
fi
mt image import "$img" busybox:fault >>"$log" 2>&1 || { echo "fault: image import failed" >&2; exit 1; }

declare -A runs recovered data data_n fsck fsck_n clean checks
order=()
FAILED=0
# mark COLUMN ok|fail records a data or fsck result of the current run.
mark() { echo "$1 $2" >>"$res"; }
# intact CMD... records whether the trial's data survived (CMD succeeds).
intact() {
	if "$@"; then mark data ok; else echo "data lost: $*"; mark data fail; return 1; fi
}
# fsck_clean NAME checks the stopped machine NAME's disk.
fsck_clean() {
	if e2fsck -fn "$(disk "$1")"; then mark fsck ok; else mark fsck fail; return 1; fi
}

# leftovers prints what the last run left behind (see the header) and
# returns 1 when there is any.
leftovers() {
	local p cmd name ppid id bad=0
	for p in $(ours); do
		cmd=$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null) || continue
		name=
		case $cmd in
		*" __network"*) continue ;; # shared; exits on its own when idle
		*" __supervise "*) name=${cmd##*__supervise }; name=${name%% *} ;;
		*qemu-system-*) name=${cmd##*-name machinetop-}; name=${name%% *} ;;
		*virtiofsd*)
			# Its own sandbox child runs under it: look up the line.
			ppid=$p
			while ppid=$(awk '{print $4}' "/proc/$ppid/stat" 2>/dev/null) && [ "${ppid:-0}" -gt 1 ]; do
				tr '\0' ' ' <"/proc/$ppid/cmdline" 2>/dev/null | grep -q " __supervise " && break
			done
			if [ "${ppid:-0}" -le 1 ]; then
				echo "leftover: virtiofsd $p outside any supervisor: $cmd"; bad=1
			fi
			continue ;;
		*) echo "leftover: process $p: $cmd"; bad=1; continue ;;
		esac
		if [ "$(state "$name" 2>/dev/null)" != running ]; then
			echo "leftover: process $p of machine $name, which is $(state "$name" 2>&1): $cmd"; bad=1
		fi
	done
	local live=" "
	for name in $(mt machine ls -q 2>/dev/null); do
		[ "$(state "$name" 2>/dev/null)" = running ] && live+="$(mt machine inspect -f '{{.ID}}' "$name") "
	done
	for p in "$rundir"/*; do
		[ -e "$p" ] || continue
		id=${p##*/}
		case $id in net-* | accel-*) continue ;; esac
		case $live in *" $id "*) continue ;; esac
		echo "leftover: runtime directory $p ($(ls -A "$p" | tr '\n' ' ')) of no running machine"; bad=1
	done
	return $bad
}

# trial NAME CHECKS FUNCTION runs FUNCTION once: a run has recovered when
# FUNCTION returns 0; FUNCTION marks data and fsck; leftovers are checked
# after it.
trial() {
	local name=$1 what=$2 fn=$3 ok=1 col r
	[ -n "${FAULT_ONLY:-}" ] && [ "$FAULT_ONLY" != "$name" ] && return
	if [ -z "${checks[$name]:-}" ]; then
		order+=("$name")
		for col in runs recovered data data_n fsck fsck_n clean; do eval "$col[\$name]=0"; done
	fi
	checks[$name]=$what
	runs[$name]=$((runs[$name] + 1))
	echo "== $name run ${runs[$name]} $(date +%T)" >>"$log"
	: >"$res"
	# Not in an if: errexit holds in the subshell only outside conditions.
	(set -e; "$fn") >>"$log" 2>&1
	if [ $? = 0 ]; then recovered[$name]=$((recovered[$name] + 1)); else ok=0; fi
	while read -r col r; do
		eval "${col}_n[\$name]=\$((${col}_n[\$name] + 1))"
		if [ "$r" = ok ]; then eval "$col[\$name]=\$(($col[\$name] + 1))"; else ok=0; fi
	done <"$res"
	if leftovers >>"$log" 2>&1; then clean[$name]=$((clean[$name] + 1)); else ok=0; fi
	if [ $ok = 0 ]; then
		echo "fault: $name run ${runs[$name]} failed (log: $log)" >&2
		FAILED=1
	fi
}

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
small=(--memory 256M --cpus 1 --disk 1G --home-mount none)
fresh() { mt machine rm -f "$1" >/dev/null 2>&1 || true; mt machine create busybox:fault -n "$1" "${small[@]}"; }
ok() { [ "$(mt machine run "$1" -- echo ok)" = ok ]; }
# synced NAME writes 8 MiB to /synced in NAME, syncs, and prints its sum.
synced() {
	mt machine run --root "$1" -- sh -c 'dd if=/dev/urandom of=/synced bs=1M count=8 2>/dev/null; sync; md5sum /synced' | cut -d' ' -f1
}
sum_is() { [ "$(mt machine run "$1" -- md5sum /synced | cut -d' ' -f1)" = "$2" ]; }

mt machine create busybox:fault -n f1 "${small[@]}" >>"$log" 2>&1
mt machine stop f1 >>"$log" 2>&1

supervisor_start() {
	mt machine stop f1
	mt machine start f1 &
	local cli=$!
	kill -9 "$(sup_pid f1)"
	wait $cli || true
	mt machine start f1
	ok f1
	mt machine stop f1
	fsck_clean f1
}
supervisor_run() {
	mt machine start f1
	local rc=0 sum
	sum=$(synced f1)
	mt machine run f1 -- sh -c 'echo started; sleep 8' >"$scratch/run.out" 2>"$scratch/run.err" &
	local cli=$!
	for _ in $(seq 100); do grep -q started "$scratch/run.out" && break; sleep 0.1; done
	kill -9 "$(sup_pid f1)"
	wait $cli || rc=$?
	[ $rc = 255 ] || { echo "run exited $rc, want 255"; cat "$scratch/run.err"; return 1; }
	grep -q "may still be running" "$scratch/run.err"
	# A new supervisor adopts the machine; it is usable.
	ok f1
	intact sum_is f1 "$sum"
}
qemu_kill() {
	mt machine start f1
	local sum
	sum=$(synced f1)
	mt machine run f1 -- sh -c 'while :; do dd if=/dev/zero of=/scratch bs=1M count=32 2>/dev/null; done' &
	local cli=$!
	sleep 2
	kill -9 "$(mt machine inspect -f '{{.VMPID}}' f1)"
	wait $cli || true
	for _ in $(seq 100); do [ "$(state f1)" = stopped ] && break; sleep 0.1; done
	[ "$(state f1)" = stopped ] || { echo "state $(state f1) after QEMU died"; return 1; }
	mt machine start f1
	intact sum_is f1 "$sum"
	ok f1
	mt machine stop f1
	fsck_clean f1
}
cli_start() {
	mt machine stop f1
	mt machine start f1 &
	local cli=$!
	sleep "$((RANDOM % 3)).$((RANDOM % 10))"
	kill -9 $cli 2>/dev/null || true
	wait $cli || true
	# The start carries on or is undone; a second start finishes it.
	mt machine start f1
	ok f1
	mt machine stop f1
	fsck_clean f1
}
cli_create() {
	mt machine rm -f fc >/dev/null 2>&1 || true
	mt machine create busybox:fault -n fc "${small[@]}" --no-boot &
	local cli=$!
	sleep "0.$((RANDOM % 10))"
	kill -9 $cli 2>/dev/null || true
	wait $cli || true
	# Either no machine, or a whole one that starts.
	if mt machine ls -q | grep -qx fc; then
		mt machine start fc
		ok fc
		mt machine rm -f fc
	fi
	! mt machine ls -q | grep -qx fc
	[ ! -e "$MACHINETOP_HOME/machines/fc" ]
}
disk_full() {
	mt machine start f1
	local sum rc=0
	sum=$(synced f1)
	mt machine run --root f1 -- dd if=/dev/zero of=/fill bs=1M 2>"$scratch/dd.err" || rc=$?
	[ $rc != 0 ] && grep -q "No space left" "$scratch/dd.err" || { echo "dd rc=$rc: $(cat "$scratch/dd.err")"; return 1; }
	mt machine restart f1
	ok f1
	intact sum_is f1 "$sum"
	mt machine run --root f1 -- rm /fill
	mt machine stop f1
	fsck_clean f1
}
guest_oom() {
	mt machine start f1
	local rc=0
	mt machine run f1 -- tail /dev/zero 2>"$scratch/oom.err" || rc=$?
	[ $rc = 137 ] || { echo "the hog's run exited $rc, want 137: $(cat "$scratch/oom.err")"; return 1; }
	# The agent survived: the next run answers at once.
	ok f1
}
parallel_start() {
	mt machine stop f1
	local pids=() rc=0
	for _ in 1 2 3; do mt machine start f1 & pids+=($!); done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ $rc = 0 ] && ok f1
}
parallel_stop() {
	mt machine start f1
	local pids=() rc=0
	for _ in 1 2 3; do mt machine stop f1 & pids+=($!); done
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	[ $rc = 0 ] && [ "$(state f1)" = stopped ]
	fsck_clean f1
}
parallel_rm() {
	fresh fp
	local i pids=() rc=0
	for i in 1 2 3; do mt machine rm -f fp 2>"$scratch/rm$i.err" & pids+=($!); done
	# Each one deletes it, finds another did, or (when it came last) says
	# there is no such machine; none fails otherwise.
	for i in 0 1 2; do
		wait "${pids[$i]}" && continue
		grep -q "no such machine" "$scratch/rm$((i + 1)).err" || { echo "rm $((i + 1)): $(cat "$scratch/rm$((i + 1)).err")"; rc=1; }
	done
	[ $rc = 0 ]
	! mt machine ls -q | grep -qx fp
	[ ! -e "$MACHINETOP_HOME/machines/fp" ]
}
corrupt_config() {
	fresh fb >/dev/null
	mt machine stop fb
	local cfg=$MACHINETOP_HOME/machines/fb/config.json
	head -c $(( $(stat -c %s "$cfg") / 2 )) "$cfg" >"$cfg.t" && mv "$cfg.t" "$cfg"
	mt machine ls >"$scratch/ls.out"
	grep fb "$scratch/ls.out" | grep -q broken
	ok f1
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
	ok f1
}
# guest_links plays a hostile guest root in a machine sharing the home that
# holds the data directory: it tries to plant links at its console log and
# config and to write its config, then restarts. The host file the links
# name and the machine's files stay as they were.
victim=$scratch/victim
echo "host data no machine may touch" >"$victim"
guest_links() {
	if ! mt machine ls -q | grep -qx fs; then
		HOME=$home mt machine create busybox:fault -n fs --memory 256M --cpus 1 --disk 1G --home-mount rw
	fi
	mt machine start fs
	local d=$MACHINETOP_HOME/machines/fs before
	before=$(md5sum "$victim" "$d/config.json" "$MACHINETOP_HOME/ssh/id_ed25519")
	for f in console.log supervisor.log config.json disk.img; do
		mt machine run --root fs -- ln -sf "$victim" "$d/$f" || true
	done
	mt machine run --root fs -- sh -c "echo '{}' > $d/config.json" || true
	mt machine run --root fs -- sh -c "cat $MACHINETOP_HOME/ssh/id_ed25519" && { echo "the guest read the SSH key"; return 1; }
	mt machine restart fs
	ok fs
	intact [ "$(md5sum "$victim" "$d/config.json" "$MACHINETOP_HOME/ssh/id_ed25519")" = "$before" ]
	[ -f "$d/console.log" ] && [ ! -L "$d/console.log" ]
}

for _ in $(seq "$N"); do
	trial supervisor-kill-start "supervisor kill -9 during start; the next start works" supervisor_start
	trial supervisor-kill-run "supervisor kill -9 during run; run exits 255 saying so; a new supervisor adopts the machine" supervisor_run
	trial qemu-kill "QEMU kill -9 during writes; state stopped, the next start works" qemu_kill
	trial cli-kill-start "CLI kill -9 0-3 s into start; the next start works" cli_start
	trial cli-kill-create "CLI kill -9 during create; no half-made machine (none, or one that starts)" cli_create
	trial disk-full "guest root fills the disk; restart works, rm frees it" disk_full
	trial guest-oom "tail /dev/zero in 256 MiB; its run exits 137, the next run works" guest_oom
	trial parallel-start "3 parallel starts of a stopped machine all exit 0" parallel_start
	trial parallel-stop "3 parallel stops of a running machine all exit 0; stopped" parallel_stop
	trial parallel-rm "3 parallel rm -f: each deletes or finds none; nothing left" parallel_rm
	trial corrupt-config "half of config.json cut; ls lists it broken, others run, rm removes it" corrupt_config
	trial truncated-state "guest.json, ssh-port, state.json emptied; ls, start and run work" truncated_state
	trial guest-links "guest root links console.log etc. to a host file, writes config; restart" guest_links
done

# count OK TOTAL prints OK/TOTAL, or - when nothing was checked.
count() { if [ "$2" = 0 ]; then echo -; else echo "$1/$2"; fi; }
printf '%-22s %4s %9s %6s %6s %6s  %s\n' FAULT RUNS RECOVERED DATA FSCK CLEAN CHECKED
for name in "${order[@]}"; do
	printf '%-22s %4d %9s %6s %6s %6s  %s\n' "$name" "${runs[$name]}" \
		"$(count "${recovered[$name]}" "${runs[$name]}")" "$(count "${data[$name]}" "${data_n[$name]}")" \
		"$(count "${fsck[$name]}" "${fsck_n[$name]}")" "$(count "${clean[$name]}" "${runs[$name]}")" "${checks[$name]}"
done
exit $FAILED
