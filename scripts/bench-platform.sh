#!/usr/bin/env bash
# Measures the whole platform with cpesim on this machine: basic periodic
# Inform sessions per second and session latency for `fleetacs all` (the
# embedded default) and for the distributed processes (inventory, two
# session workers, two gateways, Redis), plus memory per 1,000 concurrent
# sessions. Prints a Markdown section for BENCHMARKS.md.
#
#   DEVICES   simulated CPEs (default 2000)
#   DURATION  length of each measured run, in seconds with an s (default 20s)
#   CONC      sessions in flight during throughput runs (default 128)
#   FLEETACS_BIN  the fleetacs binary to measure (default ./bin/fleetacs,
#             built first), e.g. one built from an earlier commit
#   STORM     new devices of each first-contact storm (default 8000)
#   STORM_CONC  first contacts in flight during a storm (default 64, the
#             default -sessions.max-discoveries)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
devices=${DEVICES:-2000}
duration=${DURATION:-20s}
conc=${CONC:-128}
storm=${STORM:-8000}
sconc=${STORM_CONC:-64}
fleetacs=${FLEETACS_BIN:-$root/bin/fleetacs}
source "$root/scripts/bench-lib.sh"

command -v redis-server >/dev/null || scripts/ensure-test-deps.sh >/dev/null

# sim URL... runs cpesim and prints its text summary.
sim() { "$root/bin/cpesim" "$@"; }
rate() { sed -n 's/.*; \([0-9.]*\) sessions\/s.*/\1/p' | head -1; }
lat() { sed -n "s/^session latency.*$1 \([0-9.]*[a-zµ]*s\).*/\1/p" | head -1; }

report() { # name file
	printf '| %s | %s | %s | %s |\n' "$1" "$(rate <"$2")" "$(grep '^session latency' "$2" | sed 's/.*p50 \([^,]*\),.*/\1/')" "$(grep '^session latency' "$2" | sed 's/.*p99 \([^,]*\),.*/\1/')"
}

rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
# CPU time (user+system, clock ticks) of a process.
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
lat_of() { grep "^$1 latency" "$2" | sed "s/.*$3 \([^,]*\),.*/\1/"; }

# --- all-in-one -------------------------------------------------------------
gw=$(freeport); adm=$(freeport); grpc=$(freeport)
# Admission control would shed above its default of 5,000 new sessions/s per
# gateway; the benchmark measures what the platform serves, so it lifts it.
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000)
"$fleetacs" -log.level=warn -data-dir="$work/data" -gateway.auth-anonymous "${admit[@]}" \
	-gateway.listen-addr=127.0.0.1:$gw -server.http-addr=127.0.0.1:$adm -server.grpc-addr=127.0.0.1:$grpc \
	-server.internal-grpc-addr=127.0.0.1:0 all \
	>"$work/all.log" 2>&1 &
allpid=$!; pids+=($allpid)
wait_http "http://127.0.0.1:$adm/readyz"
sim -url "http://127.0.0.1:$gw/" -devices "$devices" -boot-storm -concurrency 32 >"$work/warm.txt"
idle_rss=$(rss_kb $allpid)
sim -url "http://127.0.0.1:$gw/" -devices "$devices" -known -duration "$duration" -concurrency "$conc" >"$work/all.txt"
# Memory: a closed loop of 1,000 sessions in flight at every moment.
sim -url "http://127.0.0.1:$gw/" -devices "$devices" -known -concurrency 1000 -duration 10s >"$work/mem.txt" &
simpid=$!
peak=$idle_rss
while kill -0 $simpid 2>/dev/null; do r=$(rss_kb $allpid); [ "$r" -gt "$peak" ] && peak=$r; sleep 0.05; done
# First-contact storms: new devices bootstrap with a whole-tree discovery,
# then a second storm while the known devices run periodic sessions.
s0=$(ticks $allpid)
sim -url "http://127.0.0.1:$gw/" -devices "$storm" -prefix STORMA -boot-storm -concurrency "$sconc" >"$work/storm.txt"
s1=$(ticks $allpid)
sim -url "http://127.0.0.1:$gw/" -devices "$storm" -prefix STORMB -boot-storm -concurrency "$sconc" >"$work/storm2.txt" &
simpid=$!
# The periodic run lasts about two thirds of the storm the first one
# measured, so that it runs beside the storm only.
bside=$(awk -v n="$storm" -v r="$(rate <"$work/storm.txt")" 'BEGIN{d=int(n/(r>0?r:1)*2/3); if (d<2) d=2; print d}')
sim -url "http://127.0.0.1:$gw/" -devices "$devices" -known -duration "${bside}s" -concurrency 16 >"$work/beside.txt"
wait $simpid
kill $allpid; wait $allpid 2>/dev/null || true

# --- distributed ------------------------------------------------------------
rport=$(freeport)
redis-server --port "$rport" --bind 127.0.0.1 --save "" --appendonly no --dir "$work" >"$work/redis.log" 2>&1 &
pids+=($!)
redispid=$!
for _ in $(seq 1 100); do redis-cli -p "$rport" ping >/dev/null 2>&1 && break; sleep 0.1; done
inv=$(freeport); w1=$(freeport); w2=$(freeport); g1=$(freeport); g2=$(freeport)
# The processes share the internal credential: one token file.
head -c 32 /dev/urandom | base64 >"$work/internal.token"
chmod 600 "$work/internal.token"
common=(-log.level=warn -redis.addr=127.0.0.1:$rport -client.inventory-addr=127.0.0.1:$inv -internal.token-file="$work/internal.token")
declare -A dpid
start() { local name=$1; shift; "$fleetacs" "${common[@]}" -server.http-addr=127.0.0.1:$(freeport) "$@" >"$work/$name.log" 2>&1 & pids+=($!); dpid[$name]=$!; }
start inventory -server.internal-grpc-addr=127.0.0.1:$inv -server.grpc-addr=127.0.0.1:0 -data-dir="$work/dist" -inventory.sqlite-path="$work/dist.db" inventory
start worker1 -server.internal-grpc-addr=127.0.0.1:$w1 -sessions.advertise-addr=127.0.0.1:$w1 -sessions.worker-id=w1 sessions
start worker2 -server.internal-grpc-addr=127.0.0.1:$w2 -sessions.advertise-addr=127.0.0.1:$w2 -sessions.worker-id=w2 sessions
start gateway1 -gateway.listen-addr=127.0.0.1:$g1 -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous "${admit[@]}" gateway
start gateway2 -gateway.listen-addr=127.0.0.1:$g2 -server.internal-grpc-addr=127.0.0.1:0 -gateway.auth-anonymous "${admit[@]}" gateway
wait_http "http://127.0.0.1:$g1/readyz"; wait_http "http://127.0.0.1:$g2/readyz"
half=$((devices / 2))
sim -url "http://127.0.0.1:$g1/" -devices $half -prefix DA -boot-storm -concurrency 16 >"$work/dwarm1.txt" &
p1=$!
sim -url "http://127.0.0.1:$g2/" -devices $half -prefix DB -boot-storm -concurrency 16 >"$work/dwarm2.txt"
wait $p1
dpid[redis]=$redispid
declare -A t0
for n in "${!dpid[@]}"; do t0[$n]=$(ticks "${dpid[$n]}"); done
sim -url "http://127.0.0.1:$g1/" -devices $half -prefix DA -known -duration "$duration" -concurrency $((conc / 2)) >"$work/d1.txt" &
p1=$!
sim -url "http://127.0.0.1:$g2/" -devices $half -prefix DB -known -duration "$duration" -concurrency $((conc / 2)) >"$work/d2.txt"
wait $p1
drate=$(awk -v a="$(rate <"$work/d1.txt")" -v b="$(rate <"$work/d2.txt")" 'BEGIN{printf "%.0f", a+b}')
dsessions=$(awk -v r="$drate" -v d="${duration%s}" 'BEGIN{print r*d}')
cpuline=""
total=0
for n in inventory worker1 worker2 gateway1 gateway2 redis; do
	d=$(($(ticks "${dpid[$n]}") - ${t0[$n]}))
	total=$((total + d))
	cpuline+="$n $(awk -v t=$d -v hz=$hz -v s=$dsessions 'BEGIN{printf "%.0f", t*1e6/hz/s}'), "
done
cpuline+="total $(awk -v t=$total -v hz=$hz -v s=$dsessions 'BEGIN{printf "%.0f", t*1e6/hz/s}')"

cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
echo
echo "## Platform, $(date -u +%Y-%m-%d), $(nproc) cores of ${cpu}, cpesim on the same machine"
echo
echo "$devices known devices, periodic Informs (Inform, empty POST, 204), $conc sessions in flight, $duration per run."
echo
echo "| setup | sessions/s | p50 | p99 |"
echo "|---|---|---|---|"
report "fleetacs all (SQLite inventory, in-memory affinity)" "$work/all.txt"
report "distributed: gateway-1 (of 2 gateways, 2 workers, inventory, Redis)" "$work/d1.txt"
report "distributed: gateway-2" "$work/d2.txt"
echo "| distributed total | $drate | | |"
echo
echo "Distributed CPU per session (µs, user+system): $cpuline."
echo
echo "fleetacs all memory: RSS $((idle_rss / 1024)) MiB after the warm-up, peak $((peak / 1024)) MiB with 1,000 sessions in flight ($(rate <"$work/mem.txt") sessions/s), so about $(((peak - idle_rss) / 1024)) MiB per 1,000 concurrent sessions."
echo
echo "First-contact storm, fleetacs all: $storm new devices, $sconc in flight: $(rate <"$work/storm.txt") first contacts/s, exchange p50 $(lat_of exchange "$work/storm.txt" p50), p99 $(lat_of exchange "$work/storm.txt" p99); $(awk -v t=$((s1 - s0)) -v hz=$hz -v n=$storm 'BEGIN{printf "%.0f", t*1e6/hz/n}') µs of fleetacs CPU per first contact."
echo "Periodic sessions of $devices known devices (16 in flight, ${bside}s) beside a second storm ($(rate <"$work/storm2.txt") first contacts/s): $(rate <"$work/beside.txt") sessions/s, session p50 $(lat_of session "$work/beside.txt" p50), p99 $(lat_of session "$work/beside.txt" p99)."
grep -h '^errors' "$work/all.txt" "$work/storm.txt" "$work/storm2.txt" "$work/beside.txt" "$work/d1.txt" "$work/d2.txt" | sort | uniq -c | sed 's/^/    /'
