#!/usr/bin/env bash
# Measures what tracing costs the distributed processes on this machine
# (Redis, the inventory, two session workers, two gateways, as
# scripts/bench-platform.sh runs them): periodic Inform sessions per second
# driven by cpesim with tracing off (OTEL_TRACES_EXPORTER=none) and with
# tracing on, exported over OTLP/gRPC to a local collector (tools/otlpsink)
# with a parent-based 1% trace-ID ratio sampler, in alternating runs (off,
# on, off, on, ...: the machine is shared). Each run starts the five
# fleetacs processes afresh with its variables; the inventory keeps the
# devices between runs. Prints each run (sessions/s, and the CPU time the
# five processes spent per session, a figure a busy shared machine moves
# less than the rate), the means, the overhead, and the spans the sink
# took in each traced run (which proves export happened).
#
#   DEVICES (2000)  DURATION (20s per run)  CONC (128 in flight)
#   RUNS (3 of each)  RATIO (0.01; 0: nothing sampled)  FLEETACS_BIN (./bin/fleetacs, built)
#   WARM (5s: known-device sessions before each measured run)
#   ALTERNATE (unset: each pair runs off, then on; 1: every other pair
#   runs on first, so that what the first run of a pair leaves behind or
#   gains falls on both variants)
#   PROFILE (unset; a directory: 10s CPU profiles of gateway1, worker1 and inventory
#   in the middle of every measured run, <mode>-<run>-<process>.pprof)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
devices=${DEVICES:-2000}
duration=${DURATION:-20s}
conc=${CONC:-128}
runs=${RUNS:-3}
ratio=${RATIO:-0.01}
warm=${WARM:-5s}
profile=${PROFILE:-}
alternate=${ALTERNATE:-}
pprof=()
if [ -n "$profile" ]; then mkdir -p "$profile"; pprof=(-server.pprof); fi
fleetacs=${FLEETACS_BIN:-$root/bin/fleetacs}
source "$root/scripts/bench-lib.sh"

(cd tools/otlpsink && go build -o "$root/bin/otlpsink" .)
command -v redis-server >/dev/null || scripts/ensure-test-deps.sh >/dev/null

rate() { sed -n 's/.*; \([0-9.]*\) sessions\/s.*/\1/p' | head -1; }
sim() { "$root/bin/cpesim" "$@"; }
# CPU time (user+system, clock ticks) of the processes given.
ticks() { local t=0 p; for p in "$@"; do t=$((t + $(awk '{print $14+$15}' "/proc/$p/stat"))); done; echo $t; }
hz=$(getconf CLK_TCK)
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000)

# The collector stand-in, for the whole benchmark.
sgrpc=$(freeport); shttp=$(freeport)
"$root/bin/otlpsink" -grpc-addr 127.0.0.1:$sgrpc -http-addr 127.0.0.1:$shttp >"$work/sink.out" 2>"$work/sink.log" &
sinkpid=$!; pids+=($sinkpid)
wait_http "http://127.0.0.1:$shttp/stats"
sink_spans() { curl -fs "http://127.0.0.1:$shttp/stats" | awk '{print $2}'; }

rport=$(freeport)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
head -c 32 /dev/urandom | base64 >"$work/internal.token"
chmod 600 "$work/internal.token"

# up MODE: starts the five processes with tracing MODE (off or on); sets
# g1, g2 and procs.
up() {
	local env=(OTEL_TRACES_EXPORTER=none)
	if [ "$1" = on ]; then
		env=(OTEL_EXPORTER_OTLP_ENDPOINT=http://127.0.0.1:$sgrpc OTEL_EXPORTER_OTLP_INSECURE=true
			OTEL_TRACES_SAMPLER=parentbased_traceidratio OTEL_TRACES_SAMPLER_ARG=$ratio)
	fi
	inv=$(freeport); w1=$(freeport); w2=$(freeport); g1=$(freeport); g2=$(freeport)
	local common=(-log.level=warn -redis.addr=127.0.0.1:$rport -client.inventory-addr=127.0.0.1:$inv -internal.token-file="$work/internal.token")
	procs=(); names=()
	declare -gA admin
	p() {
		local name=$1; shift
		admin[$name]=$(freeport)
		env "${env[@]}" OTEL_SERVICE_NAME="fleetacs-$name" "$fleetacs" "${common[@]}" "${pprof[@]}" -server.http-addr=127.0.0.1:${admin[$name]} "$@" >>"$work/$name.log" 2>&1 &
		procs+=($!); pids+=($!); names+=("$name")
	}
	p inventory -server.internal-grpc-addr=127.0.0.1:$inv -server.grpc-addr=127.0.0.1:0 -data-dir="$work/dist" -inventory.sqlite-path="$work/dist.db" inventory
	p worker1 -server.internal-grpc-addr=127.0.0.1:$w1 -sessions.advertise-addr=127.0.0.1:$w1 -sessions.worker-id=w1 sessions
	p worker2 -server.internal-grpc-addr=127.0.0.1:$w2 -sessions.advertise-addr=127.0.0.1:$w2 -sessions.worker-id=w2 sessions
	p gateway1 -gateway.listen-addr=127.0.0.1:$g1 -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous -gateway.drain-grace=1s "${admit[@]}" gateway
	p gateway2 -gateway.listen-addr=127.0.0.1:$g2 -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous -gateway.drain-grace=1s "${admit[@]}" gateway
	wait_http "http://127.0.0.1:$g1/readyz"; wait_http "http://127.0.0.1:$g2/readyz"
}
# down: stops them (SIGTERM: a traced process flushes its spans) and waits.
down() {
	for p in "${procs[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${procs[@]}"; do wait "$p" 2>/dev/null || true; done
}
half=$((devices / 2))
# load SECONDS OUT: both gateways, half the devices and concurrency each;
# prints the total sessions/s.
load() {
	sim -url "http://127.0.0.1:$g1/" -devices $half -prefix DA -known -duration "$1" -concurrency $((conc / 2)) >"$2.1" &
	local p1=$!
	sim -url "http://127.0.0.1:$g2/" -devices $half -prefix DB -known -duration "$1" -concurrency $((conc / 2)) >"$2.2"
	wait $p1
	awk -v a="$(rate <"$2.1")" -v b="$(rate <"$2.2")" 'BEGIN{printf "%.0f", a+b}'
}

# The devices, once.
up off
sim -url "http://127.0.0.1:$g1/" -devices $half -prefix DA -boot-storm -concurrency 16 >"$work/boot1.txt" &
b1=$!
sim -url "http://127.0.0.1:$g2/" -devices $half -prefix DB -boot-storm -concurrency 16 >"$work/boot2.txt"
wait $b1
down

declare -a off_rates on_rates on_spans off_cpu on_cpu
lines=()
for i in $(seq 1 "$runs"); do
	order="off on"
	if [ -n "$alternate" ] && [ $((i % 2)) = 0 ]; then order="on off"; fi
	for mode in $order; do
		before=$(sink_spans)
		up $mode
		load "$warm" "$work/warm-$mode-$i" >/dev/null
		prof=()
		if [ -n "$profile" ]; then
			for n in gateway1 worker1 inventory; do
				(sleep 3; curl -fs -o "$profile/$mode-$i-$n.pprof" "http://127.0.0.1:${admin[$n]}/debug/pprof/profile?seconds=10") &
				prof+=($!)
			done
		fi
		c0=$(ticks "${procs[@]}")
		pc0=(); for p in "${procs[@]}"; do pc0+=("$(ticks "$p")"); done
		r=$(load "$duration" "$work/run-$mode-$i")
		c1=$(ticks "${procs[@]}")
		per=""
		for k in "${!procs[@]}"; do
			per+="${names[$k]} $(awk -v t=$(($(ticks "${procs[$k]}") - ${pc0[$k]})) -v hz=$hz -v r="$r" -v d="${duration%s}" 'BEGIN{printf "%.0f", t*1e6/hz/(r*d)}') "
		done
		echo "run $i tracing $mode: CPU µs/session by process: $per" >>"$work/per-process.txt"
		for p in "${prof[@]}"; do wait "$p" || true; done
		down
		cpu=$(awk -v t=$((c1 - c0)) -v hz=$hz -v r="$r" -v d="${duration%s}" 'BEGIN{printf "%.0f", t*1e6/hz/(r*d)}')
		spans=$(($(sink_spans) - before))
		if [ $mode = off ]; then
			off_rates+=("$r"); off_cpu+=("$cpu")
			[ "$spans" -eq 0 ] || { echo "tracing off, yet the sink took $spans spans" >&2; exit 1; }
		else
			on_rates+=("$r"); on_spans+=("$spans"); on_cpu+=("$cpu")
		fi
		lines+=("| $i | $mode | $r | $cpu | $spans |")
		echo "run $i tracing $mode: $r sessions/s, $cpu µs CPU/session, $spans spans" >&2
	done
done
mean() { printf '%s\n' "$@" | awk '{s+=$1} END{printf "%.0f", s/NR}'; }
moff=$(mean "${off_rates[@]}"); mon=$(mean "${on_rates[@]}")
coff=$(mean "${off_cpu[@]}"); con=$(mean "${on_cpu[@]}")
# RATIO=0 samples nothing, so exports nothing.
for s in "${on_spans[@]}"; do [ "$s" -gt 0 ] || awk -v r="$ratio" 'BEGIN{exit !(r == 0)}' || { echo "a traced run exported no span" >&2; exit 1; }; done

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "## Tracing overhead, $(date -u +%Y-%m-%d), $(nproc) cores of ${cpu}, cpesim and the sink on the same machine"
echo
echo "Distributed processes (inventory on SQLite, two workers, two gateways, Redis), $devices known devices,"
echo "periodic Informs, $conc sessions in flight, $duration per run after $warm of warm-up, runs alternating ($( [ -n "$alternate" ] && echo "on first in every other pair" || echo "off first in each pair"))."
echo "Tracing on: OTLP/gRPC to tools/otlpsink on loopback, OTEL_TRACES_SAMPLER=parentbased_traceidratio,"
echo "OTEL_TRACES_SAMPLER_ARG=$ratio. Off: OTEL_TRACES_EXPORTER=none."
echo
echo "| run | tracing | sessions/s | CPU µs/session (5 processes) | spans exported |"
echo "|---|---|---|---|---|"
printf '%s\n' "${lines[@]}"
echo
echo "Mean: off $moff, on $mon sessions/s ($(awk -v a="$moff" -v b="$mon" 'BEGIN{printf "%+.1f%%", (b-a)*100/a}')); CPU per session off $coff µs, on $con µs ($(awk -v a="$coff" -v b="$con" 'BEGIN{printf "%+.1f%%", (b-a)*100/a}'))."
echo "Load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)."
echo
sed 's/^/    /' "$work/per-process.txt"
grep -h '^errors' "$work"/run-*.1 "$work"/run-*.2 2>/dev/null | sort | uniq -c | sed 's/^/    /' || true
