# bench-lib.sh: what the scripts/bench-*.sh share. Source it from the
# repository root once `root` is set:
#
#   source "$root/scripts/bench-lib.sh"
#
# It builds the binaries (make build), makes a work directory ($work) that
# goes at exit (copied to $KEEP first when KEEP names a directory; left in
# place when the script set keep_work=1 before sourcing), kills at exit the
# processes whose pids the script appends to the array pids, and defines
# freeport (a free TCP port on 127.0.0.1), wait_http URL (waits up to 30 s
# for URL to answer 2xx) and machine ("2 cores of <CPU model>, load average
# <1 min>", for the figures' headings).

work=$(mktemp -d)
pids=()
cleanup() {
	if [ -n "${KEEP:-}" ]; then cp -r "$work" "$KEEP" 2>/dev/null || true; fi
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "${keep_work:-}" != 1 ]; then rm -rf "$work"; fi
}
trap cleanup EXIT

make -s build >/dev/null

freeport() {
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' 2>/dev/null ||
		awk 'BEGIN{srand(); print 20000+int(rand()*20000)}'
}
wait_http() {
	for _ in $(seq 1 300); do curl -fs "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "not ready: $1" >&2
	return 1
}
machine() {
	printf '%s cores of %s, load average %s' "$(nproc)" \
		"$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')" "$(cut -d' ' -f1 /proc/loadavg)"
}
