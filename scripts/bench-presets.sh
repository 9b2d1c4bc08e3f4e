#!/usr/bin/env bash
# Issue 10's presets benchmark: periodic sessions/s of a converged fleet with
# 20 presets active against the same fleet without them, `fleetacs all` (the
# embedded default: SQLite inventory, in-memory affinity) and cpesim on this
# machine. Prints a Markdown section for BENCHMARKS.md.
#
# Two instances run side by side on free ports:
#   base     the tenant's default preset set only (fleetacs-bootstrap, which
#            every tenant gets; "without presets" cannot mean less without
#            deleting a default the operator did not choose to delete);
#   presets  the same plus the 20 presets of scripts/bench/presets-20.yaml.
# Each instance bootstraps DEVICES cpesim devices (0 BOOTSTRAP + 1 BOOT,
# discovery and convergence in the first session), then the check below
# proves convergence, then periodic sessions of the known devices (2 PERIODIC,
# closed loop, CONC in flight, DURATION each) are measured on one instance
# and the other in turn, base first, RUNS times each.
#
# Convergence: cpesim counts the RPCs its devices answered; a measured run
# of a converged fleet answers none (its sessions are Inform, empty POST,
# 204). (`fleetctl presets dry-run` judges from the inventory, which cannot
# know a password the CPE reads back empty: a preset with a secret never
# looks converged there, so it is no test of convergence.)
#
#   DEVICES (10000) CONC (128) DURATION (30s) RUNS (3)
#   BOOT_CONC (64)  PROFILE (unset; 1: CPU profiles of both instances during
#                   their last run, bench-presets-{base,presets}.cpu.pprof in
#                   PROFILE_DIR, default /tmp)
#   FLEETACS_BIN (./bin/fleetacs, built first)
#   KEEP (unset; a directory: the run's logs, cpesim summaries and data are
#   copied there at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
devices=${DEVICES:-10000}
conc=${CONC:-128}
duration=${DURATION:-30s}
runs=${RUNS:-3}
bconc=${BOOT_CONC:-64}
fleetacs=${FLEETACS_BIN:-$root/bin/fleetacs}
presets_file=$root/scripts/bench/presets-20.yaml
source "$root/scripts/bench-lib.sh"

rate() { sed -n 's/.*; \([0-9.]*\) sessions\/s.*/\1/p' | head -1; }
ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000)

declare -A gw grpc adm pid
# start NAME: fleetacs all on free ports, its data in $work/NAME.
start() {
	gw[$1]=$(freeport); adm[$1]=$(freeport); grpc[$1]=$(freeport)
	"$fleetacs" -log.level=warn -data-dir="$work/$1" -gateway.auth-anonymous "${admit[@]}" -server.pprof \
		-gateway.listen-addr=127.0.0.1:${gw[$1]} -server.http-addr=127.0.0.1:${adm[$1]} -server.grpc-addr=127.0.0.1:${grpc[$1]} \
		-server.internal-grpc-addr=127.0.0.1:0 -server.api-http-addr=127.0.0.1:0 -notifier.stun-addr=127.0.0.1:0 all \
		>"$work/$1.log" 2>&1 &
	pid[$1]=$!; pids+=($!)
	wait_http "http://127.0.0.1:${adm[$1]}/readyz"
}
ctl() { local n=$1; shift; FLEETACS_TOKEN=$(cat "$work/$n/admin.token") "$root/bin/fleetctl" -addr 127.0.0.1:${grpc[$n]} "$@"; }
sim() { local n=$1; shift; "$root/bin/cpesim" -url "http://127.0.0.1:${gw[$n]}/" -devices "$devices" "$@"; }
count() { grep "^$2:" "$1" | tr ' ' '\n' | awk -F: 'NF==2 && $2 ~ /^[0-9]+$/ {s+=$2} END {print s+0}'; }

start base
start presets
ctl base presets list >"$work/base-presets.txt"
ctl presets presets apply "$presets_file" >/dev/null
ctl presets presets list >"$work/presets-presets.txt"
npresets=$(($(wc -l <"$work/presets-presets.txt") - 1))

declare -A boot_rate boot_rpcs boot_faults
for n in base presets; do
	sim $n -boot-storm -concurrency "$bconc" >"$work/$n-boot.txt"
	boot_rate[$n]=$(rate <"$work/$n-boot.txt")
	boot_rpcs[$n]=$(count "$work/$n-boot.txt" "requests answered")
	boot_faults[$n]=$(count "$work/$n-boot.txt" "faults returned")
done

# Settle: a condition naming a parameter that only the first session's
# discovery brings (Device.WiFi.SSID.2.SSID) keeps a device from recording
# its fingerprint in that session (docs/provisioning.md, "Convergence"), so
# its second session matches again. Passes of DEVICES sessions each (closed
# loop: every known device takes its turn) run until one answers no RPC.
# cpesim's devices start from their default tree in every run, so what a
# pass re-applies is real work for the CPE; the ACS's side (the recorded
# fingerprint) is what makes a converged device free.
declare -A settle
for n in base presets; do
	settle[$n]=""
	for i in 1 2 3 4; do
		sim $n -known -sessions "$devices" -concurrency "$conc" >"$work/$n-settle-$i.txt"
		c=$(count "$work/$n-settle-$i.txt" "requests answered")
		settle[$n]+="$c "
		[ "$c" = 0 ] && break
	done
done

declare -A rates cpu rpcs
for i in $(seq 1 "$runs"); do
	for n in base presets; do
		t0=$(ticks ${pid[$n]})
		if [ "${PROFILE:-}" = "1" ] && [ "$i" = "$runs" ]; then
			curl -fs "http://127.0.0.1:${adm[$n]}/debug/pprof/profile?seconds=$((${duration%s} - 4))" >"${PROFILE_DIR:-/tmp}/bench-presets-$n.cpu.pprof" &
			prof=$!
		fi
		sim $n -known -duration "$duration" -concurrency "$conc" >"$work/$n-$i.txt"
		if [ -n "${prof:-}" ]; then wait "$prof" || true; prof=; fi
		r=$(rate <"$work/$n-$i.txt")
		rates[$n]+="$r "
		cpu[$n]+="$(awk -v t=$(($(ticks ${pid[$n]}) - t0)) -v hz=$hz -v r=$r -v d=${duration%s} 'BEGIN{printf "%.0f", t*1e6/hz/(r*d)}') "
		rpcs[$n]=$((${rpcs[$n]:-0} + $(count "$work/$n-$i.txt" "requests answered")))
	done
done
mean() { awk '{s=0; for (i=1;i<=NF;i++) s+=$i; printf "%.1f", s/NF}' <<<"$1"; }
mb=$(mean "${rates[base]}"); mp=$(mean "${rates[presets]}")

echo
echo "## Presets and campaigns (issue 10): presets, $(date -u +%Y-%m-%d), $(machine)"
echo
echo "\`scripts/bench-presets.sh\`: \`fleetacs all\` (embedded default), $devices cpesim TR-181 devices, periodic sessions (2 PERIODIC, closed loop, $conc in flight, $duration per run), alternating base/presets $runs times. Base: the default set only ($(($(wc -l <"$work/base-presets.txt") - 1)) preset, fleetacs-bootstrap); presets: $npresets presets ($((npresets - 1)) of scripts/bench/presets-20.yaml and fleetacs-bootstrap)."
echo
echo "| run | base sessions/s | presets sessions/s | base CPU µs/session | presets CPU µs/session |"
echo "|---|---|---|---|---|"
read -ra rb <<<"${rates[base]}"; read -ra rp <<<"${rates[presets]}"; read -ra cb <<<"${cpu[base]}"; read -ra cp <<<"${cpu[presets]}"
for i in $(seq 0 $((runs - 1))); do echo "| $((i + 1)) | ${rb[$i]} | ${rp[$i]} | ${cb[$i]} | ${cp[$i]} |"; done
echo "| mean | $mb | $mp | $(mean "${cpu[base]}") | $(mean "${cpu[presets]}") |"
echo
echo "With presets: $(awk -v b=$mb -v p=$mp 'BEGIN{printf "%+.1f%%", (p-b)/b*100}') sessions/s against base (goal: within 15%)."
echo "Bootstrap (first contact with discovery and convergence, $bconc in flight): base ${boot_rate[base]} devices/s, ${boot_rpcs[base]} RPCs answered, ${boot_faults[base]} faults; presets ${boot_rate[presets]} devices/s, ${boot_rpcs[presets]} RPCs answered, ${boot_faults[presets]} faults."
echo "Convergence: RPCs answered in the settle passes of $devices sessions each: base ${settle[base]}, presets ${settle[presets]}; in the measured runs: base ${rpcs[base]}, presets ${rpcs[presets]}."
grep -h '^errors\|^requests answered\|^faults returned' "$work"/presets-boot.txt "$work"/base-boot.txt | sort | uniq -c | sed 's/^/    /'
grep -h '^errors' "$work"/base-[0-9]*.txt "$work"/presets-[0-9]*.txt | sort | uniq -c | sed 's/^/    /'
