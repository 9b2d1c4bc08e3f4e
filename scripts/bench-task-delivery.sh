#!/usr/bin/env bash
# Measures tasks delivered per second by periodic sessions (issue 9's
# figure) with `fleetacs all`, alternating two builds, and the CPU time the
# fleetacs process spends per task session. Prints one Markdown table row
# per run.
#
# Each run: a fresh data directory, TP_DEVICES devices booted (cpesim boot
# storm), PER_DEVICE GetParameterValues tasks queued for each while they are
# idle (tools/taskload), then their periodic sessions (cpesim closed loop,
# CONC in flight) deliver them. CPU is user+system ticks of the fleetacs
# process from /proc/<pid>/stat over the delivery. With PERIODIC=1 each run
# is followed by a run of periodic sessions with no task pending (the same
# devices, PDURATION) on the same instance.
#
#   A_BIN (required) B_BIN (./bin/fleetacs) PAIRS (3) TP_DEVICES (10000)
#   PER_DEVICE (1) CONC (128) PERIODIC (0) PDURATION (20s)
#   PROFILE (unset: a directory for a CPU profile, PROFILE_SECONDS (5)
#   long, taken during B's first delivery, and the allocations made in
#   the same window: `go tool pprof -base allocs-start.pprof
#   allocs-end.pprof`)
#   SIM_FLAGS (unset: more cpesim flags for the delivery, e.g.
#   "-cpuprofile /tmp/sim.pprof")
#   SIDE (0; 1: each pair's two runs at the same time, a and b each with
#   its own fleetacs, cpesim and taskload, their deliveries starting
#   together once both have booted their devices, so that the VM's
#   drift, 20% and more within an hour, and other work on the machine
#   hit both alike; compare the CPU per task session, which sharing the
#   cores does not change, rather than the rates, which it halves)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
a_bin=${A_BIN:?A_BIN names the build to compare with}
b_bin=${B_BIN:-$root/bin/fleetacs}
pairs=${PAIRS:-3}
tp_devices=${TP_DEVICES:-10000}
per_device=${PER_DEVICE:-1}
conc=${CONC:-128}
pduration=${PDURATION:-20s}
source "$root/scripts/bench-lib.sh"
(cd tools/taskload && go build -o "$root/bin/taskload" .)

# Every simulated CPE connects from 127.0.0.1: lift the admission rate and
# the cap of connections per source (256 by default, which a CONC above it
# meets: the connections beyond are closed and the devices behind them back
# off as CPEs do, minutes at a time, starving their tasks).
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000 -gateway.max-connections-per-source=0)
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

run() { # BIN NAME
	local gw adm grpc pid t0 t1 sims cpu prof=""
	gw=$(freeport); adm=$(freeport); grpc=$(freeport)
	rm -rf "$work/data-$2"
	"$1" -log.level=warn -data-dir="$work/data-$2" -gateway.auth-anonymous "${admit[@]}" -server.pprof \
		-gateway.listen-addr=127.0.0.1:$gw -server.http-addr=127.0.0.1:$adm -server.grpc-addr=127.0.0.1:$grpc \
		-server.internal-grpc-addr=127.0.0.1:0 -server.api-http-addr=127.0.0.1:0 -notifier.stun-addr=127.0.0.1:0 all \
		>"$work/$2.log" 2>&1 &
	pid=$!; pids+=($pid)
	wait_http "http://127.0.0.1:$adm/readyz"
	"$root/bin/cpesim" -url "http://127.0.0.1:$gw/" -devices "$tp_devices" -prefix TP -boot-storm -concurrency 64 >"$work/$2-boot.txt"
	if [ "${SIDE:-0}" = 1 ]; then
		# Both deliveries start together: wait for the partner's boot.
		local partner
		partner=$([ "${2:0:1}" = a ] && echo "b${2:1}" || echo "a${2:1}")
		touch "$work/booted-$2"
		while [ ! -e "$work/booted-$partner" ]; do sleep 0.02; done
	fi
	# The delivery starts when taskload starts cpesim (its output file
	# appears): read the ticks then, and take the profile from then on.
	(
		while [ ! -e "$work/$2-sim.txt" ]; do sleep 0.02; done
		ticks $pid >"$work/$2-t0"
		if [ -n "${PROFILE:-}" ] && [ "$2" = b1 ]; then
			mkdir -p "$PROFILE"
			curl -fs "http://127.0.0.1:$adm/debug/pprof/allocs" >"$PROFILE/allocs-start.pprof"
			curl -fs "http://127.0.0.1:$adm/debug/pprof/profile?seconds=${PROFILE_SECONDS:-5}" >"$PROFILE/delivery.pprof"
			curl -fs "http://127.0.0.1:$adm/debug/pprof/allocs" >"$PROFILE/allocs-end.pprof"
		fi
	) &
	prof=$!
	"$root/bin/taskload" -api 127.0.0.1:$grpc -token-file "$work/data-$2/admin.token" -mode throughput -match TP -per-device "$per_device" \
		-then "exec '$root/bin/cpesim' -url http://127.0.0.1:$gw/ -devices $tp_devices -prefix TP -known -concurrency $conc -duration 600s ${SIM_FLAGS:-} >'$work/$2-sim.txt' 2>&1" \
		>"$work/$2.txt"
	t1=$(ticks $pid)
	wait "$prof"
	t0=$(cat "$work/$2-t0")
	sims=$(sed -n 's/^sessions: started [0-9]*, ok \([0-9]*\),.*/\1/p' "$work/$2-sim.txt" | head -1)
	rate=$(sed -n 's/^tasks delivered once all were queued: \([0-9.]*\)\/s.*/\1/p' "$work/$2.txt")
	steady=$(sed -n 's/^tasks delivered from the first end: \([0-9.]*\)\/s (the first ended \([0-9.a-z]*\) .*/\1 | \2/p' "$work/$2.txt")
	cpu=$(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="${sims:-0}" 'BEGIN{ if (s > 0) printf "%.0f", t / hz * 1e6 / s; else print "?" }')
	prate=""
	if [ "${PERIODIC:-0}" = 1 ]; then
		t0=$(ticks $pid)
		"$root/bin/cpesim" -url "http://127.0.0.1:$gw/" -devices "$tp_devices" -prefix TP -known -concurrency "$conc" -duration "$pduration" >"$work/$2-p.txt" 2>&1
		t1=$(ticks $pid)
		psims=$(sed -n 's/^sessions: started [0-9]*, ok \([0-9]*\),.*/\1/p' "$work/$2-p.txt" | head -1)
		prate=" | $(sed -n 's/.*; \([0-9.]*\) sessions\/s.*/\1/p' "$work/$2-p.txt" | head -1) | $(awk -v t=$((t1 - t0)) -v hz="$hz" -v s="${psims:-0}" 'BEGIN{ if (s > 0) printf "%.0f", t / hz * 1e6 / s; else print "?" }')"
	fi
	kill $pid; wait $pid 2>/dev/null || true
	echo "| $2 | $(date -u +%H:%M) | $(cut -d' ' -f1 /proc/loadavg) | $rate | ${steady:-? | ?} | $sims | $cpu$prate |"
}

echo "| run | UTC | load | tasks/s | tasks/s from the first end | first end after | task sessions | fleetacs CPU µs/session |$([ "${PERIODIC:-0}" = 1 ] && echo " periodic sessions/s | CPU µs/periodic session |")"
echo "|---|---|---|---|---|---|---|---|$([ "${PERIODIC:-0}" = 1 ] && echo "---|---|")"
for i in $(seq 1 "$pairs"); do
	if [ "${SIDE:-0}" = 1 ]; then
		run "$a_bin" "a$i" >"$work/row-a$i" &
		side=$!
		run "$b_bin" "b$i"
		wait "$side"
		cat "$work/row-a$i"
	else
		run "$a_bin" "a$i"
		run "$b_bin" "b$i"
	fi
done
