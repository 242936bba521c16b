#!/usr/bin/env bash
# fuzz.sh runs every Go native fuzz target of the module briefly, one at a
# time: it finds the packages whose test files define FuzzXxx functions
# (go list, then go test -list '^Fuzz' for the names the build really
# has), and runs each target alone with
#   go test -run '^$' -fuzz '^Name$' -fuzztime "$FUZZTIME" ./pkg
# printing one line per target: package, target, result (ok with the
# executions done, or with how much of the corpus go cached from earlier
# runs it re-ran when that took all of FUZZTIME; skip with the reason).
# It stops with a non-zero
# status at the first failure, showing go's output and where go wrote the
# failing input (PKG/testdata/fuzz/Name/...; keep it there to make it a
# regression seed that plain `go test` runs).
#
# FUZZTIME  how long each target fuzzes, as go test -fuzztime takes it
#           ("3s", "1m", or "500x" for a number of executions); default 3s.
set -euo pipefail
cd "$(dirname "$0")/.."

fuzztime=${FUZZTIME:-3s}
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$SECONDS
n=0

# One line per package with tests: its directory, then its test files.
while read -r dir files; do
	[ -n "$files" ] || continue
	# $files is a list of file names (without spaces) to split.
	# shellcheck disable=SC2086
	(cd "$dir" && grep -qs '^func Fuzz' $files) || continue
	pkg=./${dir#"$PWD"/}
	if ! go test -list '^Fuzz' "$pkg" >"$out" 2>&1; then
		cat "$out"
		echo "fuzz.sh: listing the fuzz targets of $pkg failed" >&2
		exit 1
	fi
	for name in $(grep '^Fuzz' "$out"); do
		n=$((n + 1))
		if ! go test -run '^$' -fuzz "^$name\$" -fuzztime "$fuzztime" "$pkg" >"$out" 2>&1; then
			printf '%-28s %-22s FAIL\n' "$pkg" "$name"
			cat "$out"
			input=$(sed -n 's/.*Failing input written to \(testdata\/fuzz\/[^ ]*\).*/\1/p' "$out" | tail -n 1)
			seed=$(sed -n 's/.*failure while testing seed corpus entry: \([^ ]*\).*/\1/p' "$out" | tail -n 1)
			if [ -n "$input" ]; then
				echo "fuzz.sh: $pkg $name failed; the failing input is $pkg/$input" >&2
				echo "fuzz.sh: re-run it with: go test -run '^$name/${input##*/}\$' $pkg" >&2
			elif [ -n "$seed" ]; then
				echo "fuzz.sh: $pkg $name failed on its seed corpus entry $seed (in the test, or under $pkg/testdata/fuzz/$name)" >&2
			else
				echo "fuzz.sh: $pkg $name failed (no input written: see go's output above)" >&2
			fi
			exit 1
		fi
		if grep -q -- '--- SKIP' "$out"; then
			why=$(grep -A1 -- '--- SKIP' "$out" | tail -n 1 | sed 's/^ *//; s/^[a-z_]*\.go:[0-9]*: //')
			result="skip ($why)"
		else
			execs=$(sed -n 's/.*execs: \([0-9]*\) .*/\1/p' "$out" | tail -n 1)
			baseline=$(sed -n 's/.*gathering baseline coverage: \([0-9]*\/[0-9]*\) .*/\1/p' "$out" | tail -n 1)
			if [ -n "$execs" ]; then
				result="ok ($execs execs in $fuzztime)"
			else
				# The time went on re-running the corpus go cached from
				# earlier runs; nothing new was tried.
				result="ok (only re-ran ${baseline:-?} cached corpus entries in $fuzztime; raise FUZZTIME to fuzz)"
			fi
		fi
		printf '%-28s %-22s %s\n' "$pkg" "$name" "$result"
	done
done < <(go list -f '{{.Dir}}{{range .TestGoFiles}} {{.}}{{end}}{{range .XTestGoFiles}} {{.}}{{end}}' ./...)

if [ "$n" -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets found" >&2
	exit 1
fi
echo "fuzz.sh: $n fuzz targets passed, ${fuzztime} each, in $((SECONDS - start))s"
