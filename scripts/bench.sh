#!/usr/bin/env bash
# Runs FleetACS's Go benchmarks on one core and prints them with the machine
# and the date, as a Markdown section ready for BENCHMARKS.md. With
# BENCH_RECORD=1 it appends that section to BENCHMARKS.md.
#
#   BENCHTIME  per-benchmark time (default 2s)
#   COUNT      repetitions, for benchstat (default 3)
set -euo pipefail
cd "$(dirname "$0")/.."
benchtime=${BENCHTIME:-2s}
count=${COUNT:-3}
out=$(mktemp)
trap 'rm -f "$out"' EXIT

for dir in $(go list -m -f '{{.Dir}}'); do
	pkgs=$(cd "$dir" && grep -rl --include='*_test.go' '^func Benchmark' . 2>/dev/null | xargs -r -n1 dirname | sort -u)
	for p in $pkgs; do
		(cd "$dir" && go test -run='^$' -bench=. -benchmem -cpu=1 -count="$count" -benchtime="$benchtime" "$p") | tee -a "$out"
	done
done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
mem=$(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)
section=$(mktemp)
{
	echo
	echo "## $(date -u +%Y-%m-%d) on $(nproc) cores of ${cpu}, ${mem}, $(go version | cut -d' ' -f3)"
	echo
	echo '```'
	grep -E '^(Benchmark|goos|goarch|pkg|cpu)' "$out"
	echo '```'
} >"$section"
cat "$section"
if [ "${BENCH_RECORD:-}" = "1" ]; then
	cat "$section" >>BENCHMARKS.md
	echo "appended to BENCHMARKS.md"
fi
rm -f "$section"
