#!/usr/bin/env bash
# Measures the tasks path (docs/tasks.md) of `fleetacs all` with cpesim and
# tools/taskload on this machine, and prints a Markdown section for
# BENCHMARKS.md:
#
#   - task round trip: API call to result, each task a GetParameterValues
#     with a connection request to one of RT_DEVICES idle devices (their own
#     connection-request listeners on loopback), one at a time and 8 at a
#     time;
#   - tasks delivered per second: one GetParameterValues task for each of
#     TP_DEVICES devices, carried by their periodic sessions (cpesim closed
#     loop, CONC in flight);
#   - the same, PER_DEVICE tasks for each device;
#   - the same delivery with the distributed processes: Redis, a NATS
#     server with JetStream, one process for inventory, tasks and notifier,
#     two session workers and two gateways, half the devices on each;
#   - periodic sessions per second with no task pending, this build against
#     BASE_BIN (a fleetacs built before the tasks path), RUNS runs each,
#     alternating.
#
#   RT_DEVICES (1000) RT_N (2000) TP_DEVICES (10000) CONC (128)
#   PER_DEVICE (4) PDEVICES (2000) PDURATION (20s) RUNS (2)
#   BASE_BIN (unset: no comparison) FLEETACS_BIN (./bin/fleetacs)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
rt_devices=${RT_DEVICES:-1000}
rt_n=${RT_N:-2000}
tp_devices=${TP_DEVICES:-10000}
per_device=${PER_DEVICE:-4}
conc=${CONC:-128}
pdevices=${PDEVICES:-2000}
pduration=${PDURATION:-20s}
runs=${RUNS:-2}
fleetacs=${FLEETACS_BIN:-$root/bin/fleetacs}
source "$root/scripts/bench-lib.sh"

(cd tools/taskload && go build -o "$root/bin/taskload" .)

rate() { sed -n 's/.*; \([0-9.]*\) sessions\/s.*/\1/p' | head -1; }
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000)

# start BIN NAME: fleetacs all on free ports; sets gw, grpc, allpid.
start() {
	gw=$(freeport); adm=$(freeport); grpc=$(freeport)
	rm -rf "$work/data-$2"
	"$1" -log.level=warn -data-dir="$work/data-$2" -gateway.auth-anonymous -notifier.allow-loopback "${admit[@]}" \
		-gateway.listen-addr=127.0.0.1:$gw -server.http-addr=127.0.0.1:$adm -server.grpc-addr=127.0.0.1:$grpc \
		-server.internal-grpc-addr=127.0.0.1:0 -server.api-http-addr=127.0.0.1:0 -notifier.stun-addr=127.0.0.1:0 all \
		>"$work/$2.log" 2>&1 &
	allpid=$!; pids+=($allpid)
	wait_http "http://127.0.0.1:$adm/readyz"
}
sim() { "$root/bin/cpesim" -url "http://127.0.0.1:$gw/" "$@"; }
load() { "$root/bin/taskload" -api 127.0.0.1:$grpc -token-file "$work/data-$name/admin.token" "$@"; }

# --- round trip and delivery -------------------------------------------------
name=tasks
start "$fleetacs" $name
"$root/bin/cpesim" -url "http://127.0.0.1:$gw/" -devices "$rt_devices" -prefix RT -cr per-device >"$work/rt-sim.txt" 2>&1 &
rtsim=$!; pids+=($rtsim)
for _ in $(seq 1 600); do
	n=$("$root/bin/fleetctl" -addr 127.0.0.1:$grpc -token "$(cat "$work/data-$name/admin.token")" devices list -o ids 2>/dev/null | grep -c RT || true)
	[ "$n" -ge "$rt_devices" ] && break
	sleep 0.2
done
load -mode roundtrip -match RT -n "$rt_n" -concurrency 1 >"$work/rt1.txt"
load -mode roundtrip -match RT -n "$rt_n" -concurrency 8 >"$work/rt8.txt"
kill -INT $rtsim; wait $rtsim 2>/dev/null || true
sim -devices "$tp_devices" -prefix TP -boot-storm -concurrency 64 >"$work/tp-boot.txt"
# Queued while the devices are idle, then delivered by their sessions.
load -mode throughput -match TP \
	-then "exec '$root/bin/cpesim' -url http://127.0.0.1:$gw/ -devices $tp_devices -prefix TP -known -concurrency $conc -duration 600s >'$work/tp-sim.txt' 2>&1" \
	>"$work/tp.txt"
# Several tasks for each device, queued while the devices are idle.
load -mode throughput -match TP -per-device "$per_device" \
	-then "exec '$root/bin/cpesim' -url http://127.0.0.1:$gw/ -devices $tp_devices -prefix TP -known -concurrency $conc -duration 600s >'$work/tpk-sim.txt' 2>&1" \
	>"$work/tpk.txt"
# Queued while the devices run their sessions.
"$root/bin/cpesim" -url "http://127.0.0.1:$gw/" -devices "$tp_devices" -prefix TP -known -concurrency "$conc" -duration 600s >"$work/tp2-sim.txt" 2>&1 &
tpsim=$!; pids+=($tpsim)
sleep 3
load -mode throughput -match TP >"$work/tp2.txt"
kill -INT $tpsim; wait $tpsim 2>/dev/null || true
kill $allpid; wait $allpid 2>/dev/null || true

# --- delivery, distributed ----------------------------------------------------
command -v redis-server >/dev/null && command -v nats-server >/dev/null || scripts/ensure-test-deps.sh >/dev/null
rport=$(freeport); nport=$(freeport)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
nats-server -a 127.0.0.1 -p "$nport" -js -sd "$work/nats" >"$work/nats.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
core=$(freeport); cpub=$(freeport); w1=$(freeport); w2=$(freeport); g1=$(freeport); g2=$(freeport)
head -c 32 /dev/urandom | base64 >"$work/internal.token"
chmod 600 "$work/internal.token"
common=(-log.level=warn -redis.addr=127.0.0.1:$rport -nats.url=nats://127.0.0.1:$nport -client.inventory-addr=127.0.0.1:$core
	-client.tasks-addr=127.0.0.1:$core -internal.token-file="$work/internal.token" -notifier.stun-addr=127.0.0.1:0)
dstart() { local name=$1; shift; "$fleetacs" "${common[@]}" -server.http-addr=127.0.0.1:$(freeport) "$@" >"$work/$name.log" 2>&1 & pids+=($!); }
dstart core -server.internal-grpc-addr=127.0.0.1:$core -server.grpc-addr=127.0.0.1:$cpub -data-dir="$work/dist" \
	-notifier.allow-loopback inventory tasks notifier
dstart worker1 -server.internal-grpc-addr=127.0.0.1:$w1 -sessions.advertise-addr=127.0.0.1:$w1 -sessions.worker-id=w1 sessions
dstart worker2 -server.internal-grpc-addr=127.0.0.1:$w2 -sessions.advertise-addr=127.0.0.1:$w2 -sessions.worker-id=w2 sessions
dstart gateway1 -gateway.listen-addr=127.0.0.1:$g1 -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous "${admit[@]}" gateway
dstart gateway2 -gateway.listen-addr=127.0.0.1:$g2 -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous "${admit[@]}" gateway
wait_http "http://127.0.0.1:$g1/readyz"; wait_http "http://127.0.0.1:$g2/readyz"
half=$((tp_devices / 2))
"$root/bin/cpesim" -url "http://127.0.0.1:$g1/" -devices $half -prefix DA -boot-storm -concurrency 32 >"$work/dboot1.txt" &
p1=$!
"$root/bin/cpesim" -url "http://127.0.0.1:$g2/" -devices $half -prefix DB -boot-storm -concurrency 32 >"$work/dboot2.txt"
wait $p1
dsims="'$root/bin/cpesim' -url http://127.0.0.1:$g1/ -devices $half -prefix DA -known -concurrency $((conc / 2)) -duration 600s >'$work/dsim1.txt' 2>&1 & exec '$root/bin/cpesim' -url http://127.0.0.1:$g2/ -devices $half -prefix DB -known -concurrency $((conc / 2)) -duration 600s >'$work/dsim2.txt' 2>&1"
"$root/bin/taskload" -api 127.0.0.1:$cpub -token-file "$work/dist/admin.token" -mode throughput -then "$dsims" >"$work/dtp.txt"
# The first cpesim of $dsims runs in the background of taskload's shell;
# its gateway port, this run's own, names it.
pkill -INT -f "127.0.0.1:$g1/ -devices $half -prefix DA -known" 2>/dev/null || true
sleep 1

# --- periodic sessions with nothing pending ---------------------------------
periodic() { # BIN NAME -> sessions/s
	start "$1" "$2"
	sim -devices "$pdevices" -prefix P -boot-storm -concurrency 32 >/dev/null
	sim -devices "$pdevices" -prefix P -known -duration "$pduration" -concurrency "$conc" >"$work/$2.txt"
	kill $allpid; wait $allpid 2>/dev/null || true
	rate <"$work/$2.txt"
}
prow=""
if [ -n "${BASE_BIN:-}" ]; then
	for i in $(seq 1 "$runs"); do
		prow+="| run $i | $(periodic "$BASE_BIN" base$i) | $(periodic "$fleetacs" new$i) |"$'\n'
	done
fi

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "## Tasks, $(date -u +%Y-%m-%d), $(nproc) cores of ${cpu}, cpesim and taskload on the same machine"
echo
echo "fleetacs all (SQLite inventory and task store, embedded NATS), scripts/bench-tasks.sh."
echo
echo "Task round trip, API call to result (CreateTask with a connection request, waiting), $rt_devices idle devices each listening on its own loopback port:"
echo
echo '```'
cat "$work/rt1.txt" "$work/rt8.txt"
echo '```'
echo
echo "Tasks delivered by periodic sessions: one GetParameterValues task for each of $tp_devices devices, which run periodic sessions back to back ($conc in flight). First queued while the devices are idle, then delivered once they inform; then queued while they inform:"
echo
echo '```'
cat "$work/tp.txt"
grep -h "^sessions:" "$work/tp-sim.txt" || true
cat "$work/tp2.txt"
grep -h "^sessions:" "$work/tp2-sim.txt" || true
echo '```'
echo
echo "The same, $per_device tasks queued for each device while they are idle:"
echo
echo '```'
cat "$work/tpk.txt"
grep -h "^sessions:" "$work/tpk-sim.txt" || true
echo '```'
echo
echo "The same, one task for each device, with the distributed processes (Redis, a NATS server, inventory + tasks + notifier in one process, two session workers, two gateways, half the devices on each):"
echo
echo '```'
cat "$work/dtp.txt"
grep -h "^sessions:" "$work/dsim1.txt" "$work/dsim2.txt" || true
echo '```'
if [ -n "$prow" ]; then
	echo
	echo "Periodic sessions/s with no task pending ($pdevices known devices, $conc in flight, $pduration per run), before the tasks path and now:"
	echo
	echo "| | before (\`BASE_BIN\`) | now |"
	echo "|---|---|---|"
	printf '%s' "$prow"
fi
