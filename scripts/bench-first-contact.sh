#!/usr/bin/env bash
# Measures first-contact storms against `fleetacs all` with cpesim on this
# machine (BENCHMARKS.md, "First-contact storms, session side"): a boot storm
# of DEVICES new 640-parameter TR-181 devices, CONC in flight, with the
# process's CPU per first contact and a CPU profile of the middle of the run;
# then, with BESIDE set, the same storm with BESIDE known devices informing
# periodically beside it at BESIDE_RATE sessions/s.
#
#   DEVICES      storm devices (default 3000)
#   CONC         storm sessions in flight (default 64)
#   BESIDE       known devices informing beside the storm (default 0: none)
#   BESIDE_RATE  their sessions/s (default 100), BESIDE_DUR how long (default 30s)
#   REDIS        host:port of a Redis to checkpoint into (default: none, in memory)
#   PROFILE      seconds of CPU profile, from 2 s into the storm (default 15; 0: none)
#
# Extra arguments go to fleetacs (e.g. -sessions.max-discoveries=16). The
# output directory is printed at the end: storm.txt, beside.txt, cpu.pprof.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
devices=${DEVICES:-3000}
conc=${CONC:-64}
beside=${BESIDE:-0}
profile=${PROFILE:-15}
keep_work=1 # its output stays for reading
source "$root/scripts/bench-lib.sh"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

gw=$(freeport); adm=$(freeport)
extra=()
if [ -n "${REDIS:-}" ]; then extra+=(-redis.addr="$REDIS" -redis.prefix="bench$$:"); fi
# Admission control would shed above its default rate; the benchmark
# measures what the platform serves, so it lifts it.
"$root/bin/fleetacs" -log.level=warn -data-dir="$work/data" -gateway.auth-anonymous \
	-gateway.admission-rate=50000 -gateway.admission-burst=50000 \
	-gateway.listen-addr=127.0.0.1:$gw -server.http-addr=127.0.0.1:$adm -server.grpc-addr=127.0.0.1:0 \
	-server.internal-grpc-addr=127.0.0.1:0 -server.pprof "${extra[@]}" "$@" all >"$work/fleetacs.log" 2>&1 &
pid=$!; pids+=($pid)
wait_http "http://127.0.0.1:$adm/readyz"
url="http://127.0.0.1:$gw/"

if [ "$beside" -gt 0 ]; then
	# The known devices' own first contacts, few at a time so that a
	# discovery cap does not postpone them.
	"$root/bin/cpesim" -url "$url" -devices "$beside" -prefix KNOWN -boot-storm -concurrency 4 >"$work/beside-warm.txt"
fi
t0=$(ticks $pid)
start=$(date +%s.%N)
"$root/bin/cpesim" -url "$url" -devices "$devices" -boot-storm -concurrency "$conc" >"$work/storm.txt" &
sim=$!; pids+=($sim)
if [ "$beside" -gt 0 ]; then
	"$root/bin/cpesim" -url "$url" -devices "$beside" -prefix KNOWN -known -concurrency 64 \
		-rate "${BESIDE_RATE:-100}" -duration "${BESIDE_DUR:-30s}" >"$work/beside.txt" &
	bsim=$!; pids+=($bsim)
fi
if [ "$profile" != 0 ]; then
	sleep 2
	curl -fs -o "$work/cpu.pprof" "http://127.0.0.1:$adm/debug/pprof/profile?seconds=$profile"
fi
wait $sim
end=$(date +%s.%N)
t1=$(ticks $pid)
if [ "$beside" -gt 0 ]; then wait "$bsim"; fi

echo "== storm: $devices devices, $conc in flight (load average $(cut -d' ' -f1-3 /proc/loadavg))"
grep -E '^(sessions|exchange latency|requests answered)' "$work/storm.txt"
gpn=$(sed -n 's/.*GetParameterNames:\([0-9]*\).*/\1/p' "$work/storm.txt" | head -1)
awk -v t="$((t1 - t0))" -v hz="$(getconf CLK_TCK)" -v n="$devices" -v d="${gpn:-0}" -v s="$start" -v e="$end" 'BEGIN {
	printf "fleetacs CPU per storm session: %.2f ms; discoveries completed: %d (%.1f/s)\n", t * 1000 / hz / n, d, d / (e - s) }'
if [ "$beside" -gt 0 ]; then
	echo "== beside: $beside known devices"
	grep -E '^(sessions|session latency|exchange latency)' "$work/beside.txt"
fi
echo "output: $work"
