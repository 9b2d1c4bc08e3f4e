#!/usr/bin/env bash
# Measures what tracing costs the distributed processes with both variants
# running AT THE SAME TIME on this machine: two complete deployments (each
# its own Redis, inventory on SQLite, two session workers, two gateways,
# as scripts/bench-tracing.sh runs one), one with tracing off
# (OTEL_TRACES_EXPORTER=none), one exporting over OTLP/gRPC to a local
# collector (tools/otlpsink) with a parent-based 1% trace-ID ratio
# sampler, each driven by its own cpesim closed loops.
#
# Why side by side: the virtual machines this is measured on change speed
# by 20 to 40% from one minute to the next, more than the effect measured,
# so runs one after the other (scripts/bench-tracing.sh) compare a variant
# with the machine's drift. Running together, both variants see the same
# machine at every moment and share its two cores through the scheduler:
# on a saturated machine each completes sessions in inverse proportion to
# the CPU a session costs it, so the ratio of their rates is the
# throughput cost of tracing. Each round restarts both deployments and
# swaps which one traces, so nothing particular to one (its ports, its
# files) is counted as tracing.
#
# Prints one row per round (sessions/s and CPU µs per session, the five
# processes' user+system time, of each variant) and the median and mean
# of the rounds' on/off ratios.
#
#   DEVICES (2000 per deployment)  DURATION (20s per round)  CONC (128
#   in flight per deployment)  ROUNDS (6)  RATIO (0.01; 0: nothing
#   sampled, the unsampled calls' plumbing alone)  WARM (5s)
#   FLEETACS_BIN (./bin/fleetacs, built)
#   CALIBRATE (unset; 1: the "on" deployment runs with tracing off too, an
#   A/A run that shows what the method itself reads between two identical
#   deployments: its bias and spread)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
devices=${DEVICES:-2000}
duration=${DURATION:-20s}
conc=${CONC:-128}
rounds=${ROUNDS:-6}
ratio=${RATIO:-0.01}
warm=${WARM:-5s}
fleetacs=${FLEETACS_BIN:-$root/bin/fleetacs}
# RATIO=0: nothing is sampled, so nothing exported; what the traced
# deployment pays then is the trace context's plumbing alone.
nothing_sampled=$(awk -v r="$ratio" 'BEGIN{print (r == 0) ? 1 : 0}')
source "$root/scripts/bench-lib.sh"

(cd tools/otlpsink && go build -o "$root/bin/otlpsink" .)
command -v redis-server >/dev/null || scripts/ensure-test-deps.sh >/dev/null

rate() { sed -n 's/.*; \([0-9.]*\) sessions\/s.*/\1/p' | head -1; }
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
hz=$(getconf CLK_TCK)
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000)

sgrpc=$(freeport); shttp=$(freeport)
"$root/bin/otlpsink" -grpc-addr 127.0.0.1:$sgrpc -http-addr 127.0.0.1:$shttp >"$work/sink.out" 2>"$work/sink.log" &
pids+=($!)
wait_http "http://127.0.0.1:$shttp/stats"
sink_spans() { curl -fs "http://127.0.0.1:$shttp/stats" | awk '{print $2}'; }

# The two deployments, X and Y: a Redis and an internal token each.
declare -A redis gw1 gw2 procs
for d in X Y; do
	redis[$d]=$(freeport)
	redis-server --port "${redis[$d]}" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis-$d.log" 2>&1 &
	pids+=($!)
	for _ in $(seq 1 100); do redis-cli -p "${redis[$d]}" ping >/dev/null 2>&1 && break; sleep 0.1; done
	head -c 32 /dev/urandom | base64 >"$work/internal-$d.token"
	chmod 600 "$work/internal-$d.token"
done

# up D MODE: starts deployment D's five processes with tracing MODE (off
# or on); sets gw1[D], gw2[D] and procs[D].
up() {
	local d=$1 env=(OTEL_TRACES_EXPORTER=none)
	if [ "$2" = on ] && [ -z "${CALIBRATE:-}" ]; then
		env=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sgrpc OTEL_EXPORTER_OTLP_INSECURE=true
			OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$ratio)
	fi
	local inv w1 w2 list=()
	inv=$(freeport); w1=$(freeport); w2=$(freeport); gw1[$d]=$(freeport); gw2[$d]=$(freeport)
	local common=(-log.level=warn -redis.addr=127.0.0.1:${redis[$d]} -client.inventory-addr=127.0.0.1:$inv
		-internal.token-file="$work/internal-$d.token" -server.http-addr=127.0.0.1:0)
	p() {
		local name=$1; shift
		env "${env[@]}" OTEL_SERVICE_NAME="fleetacs-$d-$name" "$fleetacs" "${common[@]}" "$@" >>"$work/$d-$name.log" 2>&1 &
		list+=($!); pids+=($!)
	}
	p inventory -server.internal-grpc-addr=127.0.0.1:$inv -server.grpc-addr=127.0.0.1:0 -server.api-http-addr=127.0.0.1:0 \
		-data-dir="$work/data-$d" -inventory.sqlite-path="$work/data-$d/inventory.db" inventory
	p worker1 -server.internal-grpc-addr=127.0.0.1:$w1 -sessions.advertise-addr=127.0.0.1:$w1 -sessions.worker-id=w1 sessions
	p worker2 -server.internal-grpc-addr=127.0.0.1:$w2 -sessions.advertise-addr=127.0.0.1:$w2 -sessions.worker-id=w2 sessions
	p gateway1 -gateway.listen-addr=127.0.0.1:${gw1[$d]} -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous -gateway.drain-grace=1s "${admit[@]}" gateway
	p gateway2 -gateway.listen-addr=127.0.0.1:${gw2[$d]} -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous -gateway.drain-grace=1s "${admit[@]}" gateway
	procs[$d]="${list[*]}"
}
ready() { wait_http "http://127.0.0.1:${gw1[$1]}/readyz"; wait_http "http://127.0.0.1:${gw2[$1]}/readyz"; }
down() {
	local p
	for p in ${procs[X]} ${procs[Y]}; do kill "$p" 2>/dev/null || true; done
	for p in ${procs[X]} ${procs[Y]}; do wait "$p" 2>/dev/null || true; done
}
half=$((devices / 2))
# load D SECONDS OUT [more cpesim flags]: deployment D's two closed loops
# (devices of prefix D), in the background; their pids in loads.
loads=()
load() {
	local d=$1 secs=$2 out=$3; shift 3
	"$root/bin/cpesim" -url "http://127.0.0.1:${gw1[$d]}/" -devices $half -prefix "${d}A" -duration "$secs" -concurrency $((conc / 2)) "$@" >"$out.1" &
	loads+=($!)
	"$root/bin/cpesim" -url "http://127.0.0.1:${gw2[$d]}/" -devices $half -prefix "${d}B" -duration "$secs" -concurrency $((conc / 2)) "$@" >"$out.2" &
	loads+=($!)
}
wait_loads() { local p; for p in "${loads[@]}"; do wait "$p"; done; loads=(); }
both_rates() { awk -v a="$(rate <"$1.1")" -v b="$(rate <"$1.2")" 'BEGIN{printf "%.0f", a+b}'; }

# The devices of each deployment, once (first contacts, tracing off).
up X off; up Y off; ready X; ready Y
for d in X Y; do
	"$root/bin/cpesim" -url "http://127.0.0.1:${gw1[$d]}/" -devices $half -prefix "${d}A" -boot-storm -concurrency 16 >"$work/boot-$d.1" &
	loads+=($!)
	"$root/bin/cpesim" -url "http://127.0.0.1:${gw2[$d]}/" -devices $half -prefix "${d}B" -boot-storm -concurrency 16 >"$work/boot-$d.2" &
	loads+=($!)
done
wait_loads
down

lines=(); ratios=(); cratios=()
for i in $(seq 1 "$rounds"); do
	# Odd rounds trace X, even rounds Y.
	if [ $((i % 2)) = 1 ]; then on=X off=Y; else on=Y off=X; fi
	before=$(sink_spans)
	up $on on; up $off off; ready X; ready Y
	load X "$warm" "$work/warm-X-$i" -known; load Y "$warm" "$work/warm-Y-$i" -known; wait_loads
	# shellcheck disable=SC2086
	t0on=$(ticks ${procs[$on]}); t0off=$(ticks ${procs[$off]})
	load $on "$duration" "$work/run-on-$i" -known; load $off "$duration" "$work/run-off-$i" -known; wait_loads
	# shellcheck disable=SC2086
	t1on=$(ticks ${procs[$on]}); t1off=$(ticks ${procs[$off]})
	down
	ron=$(both_rates "$work/run-on-$i"); roff=$(both_rates "$work/run-off-$i")
	secs=${duration%s}
	con=$(awk -v t=$((t1on - t0on)) -v hz=$hz -v r="$ron" -v d="$secs" 'BEGIN{printf "%.0f", t*1e6/hz/(r*d)}')
	coff=$(awk -v t=$((t1off - t0off)) -v hz=$hz -v r="$roff" -v d="$secs" 'BEGIN{printf "%.0f", t*1e6/hz/(r*d)}')
	spans=$(($(sink_spans) - before))
	[ "$spans" -gt 0 ] || [ -n "${CALIBRATE:-}" ] || [ "$nothing_sampled" = 1 ] || { echo "round $i: the traced deployment exported no span" >&2; exit 1; }
	ratio_r=$(awk -v a="$roff" -v b="$ron" 'BEGIN{printf "%+.1f", (b-a)*100/a}')
	ratio_c=$(awk -v a="$coff" -v b="$con" 'BEGIN{printf "%+.1f", (b-a)*100/a}')
	ratios+=("$ratio_r"); cratios+=("$ratio_c")
	lines+=("| $i | $on | $roff | $ron | $ratio_r% | $coff | $con | $ratio_c% | $spans | $(cut -d' ' -f1 /proc/loadavg) |")
	echo "round $i (tracing on $on): off $roff, on $ron sessions/s ($ratio_r%); CPU µs/session off $coff, on $con ($ratio_c%); $spans spans" >&2
done
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END{if (NR%2) printf "%+.1f", v[(NR+1)/2]; else printf "%+.1f", (v[NR/2]+v[NR/2+1])/2}'; }
mean() { printf '%s\n' "$@" | awk '{s+=$1} END{printf "%+.1f", s/NR}'; }

echo
echo "## Tracing overhead side by side, $(date -u +%Y-%m-%d\ %H:%M) UTC, $(machine)"
echo
echo "Two deployments at once (each: Redis, inventory on SQLite, two workers, two gateways), $devices known"
echo "devices and $conc sessions in flight each, periodic Informs, $duration per round after $warm of warm-up."
echo "Tracing on: OTLP/gRPC to tools/otlpsink on loopback, OTEL_TRACES_SAMPLER=parentbased_traceidratio,"
echo "OTEL_TRACES_SAMPLER_ARG=$ratio. Off: OTEL_TRACES_EXPORTER=none. Rounds alternate which deployment traces."
echo
echo "| round | traced | off sessions/s | on sessions/s | on vs off | off CPU µs/session | on CPU µs/session | on vs off | spans | load |"
echo "|---|---|---|---|---|---|---|---|---|---|"
printf '%s\n' "${lines[@]}"
echo
echo "Throughput on vs off: median $(median "${ratios[@]}")%, mean $(mean "${ratios[@]}")%; CPU per session: median $(median "${cratios[@]}")%, mean $(mean "${cratios[@]}")%."
grep -h '^errors' "$work"/run-*.1 "$work"/run-*.2 2>/dev/null | sort | uniq -c | sed 's/^/    /' || true
