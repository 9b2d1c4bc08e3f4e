#!/usr/bin/env bash
# Issue 10's campaign benchmark: a firmware campaign over DEVICES cpesim
# devices against `fleetacs all` (the embedded default: SQLite inventory,
# task, campaign and file stores, embedded NATS), cpesim on the same
# machine. Prints a Markdown section for BENCHMARKS.md.
#
# cpesim boots the fleet (TR-181, software version 1.0.0), then idles with a
# one-hour periodic interval and answers connection requests on one shared
# listener (-cr shared); downloads are real (-fetch: GET of the signed URL
# from /files/ on the gateway's CWMP listener, length and SHA-256 checked)
# and a firmware reboots the device after REBOOT (its 1 BOOT session then
# reports the new SoftwareVersion, which the campaign verifies). A random
# firmware image of FW_MB MiB is uploaded with fleetctl, and a campaign is
# created as an operator would: waves of 1%, 10% and 100%, MAX_IN_FLIGHT
# devices in flight, a connection request per task, stop rule 5% over 50.
#
# Every simulated CPE connects from 127.0.0.1, so the gateway's cap on
# connections from one address (-gateway.max-connections-per-source, 256)
# is lifted: cpesim's session connections and its downloads exceed it, and
# the connections it closes fail downloads with 9015.
#
# Reported: devices upgraded per second (campaign creation to completion,
# and the last wave alone), bytes served and their rate, CPU of each
# process and peak RSS (VmHWM) of each process.
#
#   DEVICES (10000) FW_MB (4) MAX_IN_FLIGHT (1000) CONC (64: cpesim's
#   sessions and transfers in flight; the boot storm is as wide, and 64 is
#   the default -sessions.max-discoveries, so that every device is
#   discovered in its first session: wider, the discoveries over the bound
#   are postponed with ScheduleInform and the devices' returns load the
#   sessions the campaign needs) REBOOT (1s) NOTIFIER_RATE (200, the
#   default -notifier.rate: connection requests/s) FLEETACS_BIN
#   PROFILE (unset; 1: a 30 s CPU profile of fleetacs from 10 s into the
#   campaign, bench-campaign.cpu.pprof in PROFILE_DIR, default /tmp)
#   SETTLE (0: seconds cpesim goes on after the campaign ended, before its
#   counts are read; what a storm postponed is discovered meanwhile)
#   KEEP (unset; a directory: the run's logs, cpesim summaries and data are
#   copied there at the end)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
devices=${DEVICES:-10000}
fw_mb=${FW_MB:-4}
cap=${MAX_IN_FLIGHT:-1000}
conc=${CONC:-64}
reboot=${REBOOT:-1s}
crrate=${NOTIFIER_RATE:-200}
fleetacs=${FLEETACS_BIN:-$root/bin/fleetacs}
source "$root/scripts/bench-lib.sh"

ticks() { awk '{print $14+$15}' "/proc/$1/stat"; }
hwm_mib() { awk '/VmHWM/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
rss_mib() { awk '/VmRSS/ {printf "%.0f", $2/1024}' "/proc/$1/status"; }
hz=$(getconf CLK_TCK)
admit=(-gateway.admission-rate=50000 -gateway.admission-burst=50000)

gw=$(freeport); adm=$(freeport); grpc=$(freeport)
"$fleetacs" -log.level=warn -data-dir="$work/data" -gateway.auth-anonymous "${admit[@]}" -server.pprof \
	-notifier.allow-loopback -notifier.rate="$crrate" -gateway.max-connections-per-source=0 \
	-gateway.listen-addr=127.0.0.1:$gw -server.http-addr=127.0.0.1:$adm -server.grpc-addr=127.0.0.1:$grpc \
	-server.internal-grpc-addr=127.0.0.1:0 -server.api-http-addr=127.0.0.1:0 -notifier.stun-addr=127.0.0.1:0 all \
	>"$work/all.log" 2>&1 &
allpid=$!; pids+=($allpid)
wait_http "http://127.0.0.1:$adm/readyz"
ctl() { FLEETACS_TOKEN=$(cat "$work/data/admin.token") "$root/bin/fleetctl" -addr 127.0.0.1:$grpc "$@"; }

"$root/bin/cpesim" -url "http://127.0.0.1:$gw/" -devices "$devices" -boot-storm -periodic -interval 1h \
	-cr shared -fetch -reboot-time "$reboot" -concurrency "$conc" -timeout 120s >"$work/sim.txt" 2>&1 &
simpid=$!; pids+=($simpid)
for _ in $(seq 1 3000); do
	n=$(ctl devices list -software-version 1.0.0 -limit 0 -page-size 1000 -o ids 2>/dev/null | wc -l || true)
	[ "$n" -ge "$devices" ] && break
	sleep 2
done
boot_rss=$(rss_mib $allpid)

head -c $((fw_mb << 20)) /dev/urandom >"$work/2.0.0.bin"
fw_bytes=$(stat -c %s "$work/2.0.0.bin")
ctl files upload "$work/2.0.0.bin" -type firmware -version 2.0.0 -o id >"$work/file.id"
c0=$(ticks $allpid); s0=$(ticks $simpid); t0=$(date +%s.%N)
id=$(ctl campaigns create -name fw-2.0.0 -firmware-version 2.0.0 -software-version 1.0.0 \
	-wave 1% -wave 10% -wave 100% -max-in-flight "$cap" -max-failure-ratio 0.05 -min-sample 50 -o id)
if [ "${PROFILE:-}" = "1" ]; then
	(sleep 10; curl -fs "http://127.0.0.1:$adm/debug/pprof/profile?seconds=30" >"${PROFILE_DIR:-/tmp}/bench-campaign.cpu.pprof") &
	pids+=($!)
fi
peak_rss=0
state=""
for _ in $(seq 1 3600); do
	ctl campaigns get "$id" -failed 5 -o json >"$work/campaign.json" 2>/dev/null || true
	state=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["campaign"].get("state",""))' "$work/campaign.json" 2>/dev/null || true)
	r=$(rss_mib $allpid); [ "$r" -gt "$peak_rss" ] && peak_rss=$r
	case "$state" in *COMPLETED | *STOPPED | *ABORTED) break ;; esac
	sleep 0.5
done
t1=$(date +%s.%N); c1=$(ticks $allpid); s1=$(ticks $simpid)
hwm=$(hwm_mib $allpid); sim_hwm=$(hwm_mib $simpid)
sleep "${SETTLE:-0}"
kill -INT $simpid; wait $simpid 2>/dev/null || true

python3 - "$work/campaign.json" "$t0" "$t1" "$fw_bytes" "$devices" >"$work/figures.txt" <<'PY'
import json, sys
from datetime import datetime
c = json.load(open(sys.argv[1]))["campaign"]; t0, t1 = float(sys.argv[2]), float(sys.argv[3]); size = int(sys.argv[4])
tot = c.get("totals", {})
ok = int(tot.get("succeeded", 0)); failed = int(tot.get("failed", 0))
el = t1 - t0
def ts(s): return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
waves = c.get("waves", [])
last = waves[-1] if waves else {}
lw = ""
if last.get("startTime"):
    n = int(last.get("outcomes", {}).get("succeeded", 0))
    d = t1 - ts(last["startTime"])
    lw = f"{n} devices in {d:.1f} s, {n/d:.0f} devices/s"
print(f"state={c.get('state')} ok={ok} failed={failed} elapsed={el:.1f} rate={ok/el:.1f} bytes={ok*size} mbps={ok*size/el/1e6:.0f} lastwave='{lw}' planned={c.get('plannedDevices')}")
PY
eval "$(cat "$work/figures.txt")"
echo
echo "## Presets and campaigns (issue 10): firmware campaign, $(date -u +%Y-%m-%d), $(machine)"
echo
echo "\`scripts/bench-campaign.sh\`: \`fleetacs all\` (embedded default, \`-notifier.rate $crrate -gateway.max-connections-per-source 0\`), $devices cpesim devices (\`-fetch -cr shared -reboot-time $reboot -concurrency $conc\`), firmware of $fw_mb MiB ($fw_bytes bytes), waves 1%, 10%, 100%, at most $cap in flight, a connection request per task."
echo
echo "| figure | value |"
echo "|---|---|"
echo "| outcome | $state: $ok succeeded, $failed failed of $planned planned |"
echo "| creation to completion | ${elapsed} s, **${rate} devices upgraded/s** |"
echo "| last wave alone | $lastwave |"
echo "| bytes served (succeeded × size) | $(awk -v b=$bytes 'BEGIN{printf "%.2f GB", b/1e9}'), ${mbps} MB/s over the campaign |"
echo "| fleetacs CPU over the campaign | $(awk -v t=$((c1 - c0)) -v hz=$hz -v e=$elapsed 'BEGIN{printf "%.1f s (%.0f%% of a core)", t/hz, t/hz/e*100}') |"
echo "| cpesim CPU over the campaign | $(awk -v t=$((s1 - s0)) -v hz=$hz -v e=$elapsed 'BEGIN{printf "%.1f s (%.0f%% of a core)", t/hz, t/hz/e*100}') |"
echo "| fleetacs RSS after the boot storm / peak during the campaign (sampled) / VmHWM | $boot_rss / $peak_rss / $hwm MiB |"
echo "| cpesim VmHWM | $sim_hwm MiB |"
grep -h '^errors\|^transfers\|^faults returned\|^requests answered' "$work/sim.txt" | sed 's/^/    /'
