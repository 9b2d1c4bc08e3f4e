#!/usr/bin/env bash
# Runs every FleetACS test: static checks, each workspace module's tests with
# the race detector, then the fuzz targets for a short while. It installs or
# builds what the tests need first (scripts/ensure-test-deps.sh), so it works
# on a fresh Debian machine with Go installed.
#
# Every module's tests run under go test -timeout (its line in
# module_timeout below), and the whole run under a budget: a module starts
# only while budget is left, and its -timeout never outlasts what is left.
# A stuck test thus fails with its goroutines dumped, and a run on a
# machine too loaded to finish fails in bounded time, saying so.
#
# Environment:
#   FUZZTIME   how long each fuzz target runs (default 10s under CI, else 0 = skip fuzzing)
#   TESTFLAGS  extra flags for go test (e.g. -short, -run=Decode)
#   FLEETACS_TEST_BUDGET   time allowed for the whole run (default 30m; Go duration: 45m, 1h, 90s)
#   FLEETACS_TEST_REDIS_ADDR / FLEETACS_TEST_NATS_URL / FLEETACS_TEST_MONGODB_URI
#              use these running servers instead of starting private ones
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

# seconds converts a Go-style duration (1h30m, 45m, 90s) to seconds.
seconds() {
	local d=$1 total=0 n unit
	while [[ $d =~ ^([0-9]+)([hms])(.*)$ ]]; do
		n=${BASH_REMATCH[1]} unit=${BASH_REMATCH[2]} d=${BASH_REMATCH[3]}
		case $unit in
		h) total=$((total + n * 3600)) ;;
		m) total=$((total + n * 60)) ;;
		s) total=$((total + n)) ;;
		esac
	done
	if [ -n "$d" ] || [ "$total" -eq 0 ]; then
		echo "test.sh: cannot read duration $1" >&2
		exit 2
	fi
	echo "$total"
}

budget=$(seconds "${FLEETACS_TEST_BUDGET:-30m}")

# module_timeout is the go test -timeout of a module's test binaries: three
# to five times what its slowest package took on the shared 2-core
# development machine at a load average of 10 to 17 (cmd/fleetacs 88-93s,
# services/inventory's MongoDB store on FerretDB 91-169s, cmd/fleetctl
# 12-28s, pkg/cwmp 25s, the rest under 12s); the default covers the small
# modules.
module_timeout() {
	case ${1#"$root"/} in
	cmd/fleetacs) echo 480 ;;
	services/inventory) echo 600 ;;
	services/sessions | tools/cpesim | cmd/fleetctl) echo 240 ;;
	# deploy builds the three static binaries for the image tests (about 6
	# minutes from a cold build cache on the loaded 2-core machine).
	deploy) echo 900 ;;
	*) echo 180 ;;
	esac
}

if [ -x scripts/ensure-test-deps.sh ]; then
	scripts/ensure-test-deps.sh || { echo "ensure-test-deps failed" >&2; exit 1; }
fi
if [ -x scripts/proto-tools.sh ]; then
	scripts/proto-tools.sh || { echo "proto-tools failed" >&2; exit 1; }
fi
# The budget counts from here: installing the tools above happens once.
started=$SECONDS

status=0
fail() { echo "FAIL: $*" >&2; status=1; }

echo "== gofmt"
unformatted=$(git ls-files -co --exclude-standard '*.go' | grep -v '\.pb\.go$' | xargs -r gofmt -l)
[ -z "$unformatted" ] || fail "gofmt needed: $unformatted"

modules=$(go list -m -f '{{.Dir}}')

echo "== go vet"
for dir in $modules; do
	(cd "$dir" && go vet ./...) || fail "go vet in ${dir#$root/}"
done

echo "== comments cite the repository's docs"
go run scripts/doc-citations.go -strict || fail "a comment cites a document outside the repository or a section docs/ lacks: run go run scripts/doc-citations.go -fix, then check what it could not rewrite"

if [ -x scripts/check-proto.sh ]; then
	echo "== generated code is current"
	scripts/check-proto.sh || fail "generated protobuf code is stale: run make proto"
fi

echo "== go test -race"
for dir in $modules; do
	left=$((budget - (SECONDS - started)))
	if [ "$left" -le 0 ]; then
		fail "test budget of ${FLEETACS_TEST_BUDGET:-30m} spent before the tests in ${dir#$root/} (FLEETACS_TEST_BUDGET)"
		break
	fi
	limit=$(module_timeout "$dir")
	[ "$left" -lt "$limit" ] && limit=$left
	# shellcheck disable=SC2086
	(cd "$dir" && go test -race -count=1 -timeout="${limit}s" ${TESTFLAGS:-} ./...) || fail "tests in ${dir#$root/} (-timeout ${limit}s)"
done
echo "== tests took $((SECONDS - started))s of a ${FLEETACS_TEST_BUDGET:-30m} budget"

fuzztime=${FUZZTIME:-}
if [ -z "$fuzztime" ] && [ "${CI:-}" = "true" ]; then fuzztime=10s; fi
if [ -n "$fuzztime" ] && [ "$fuzztime" != "0" ] && [ $((budget - (SECONDS - started))) -le 0 ]; then
	fail "test budget of ${FLEETACS_TEST_BUDGET:-30m} spent before fuzzing (FLEETACS_TEST_BUDGET)"
elif [ -n "$fuzztime" ] && [ "$fuzztime" != "0" ]; then
	echo "== fuzz ($fuzztime per target)"
	# fuzz_one DIR TARGET runs one target, its output in /tmp/fleetacs-fuzz.log.
	fuzz_one() {
		(cd "$1" && go test -run='^$' -fuzz="^${2}\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s .) >/tmp/fleetacs-fuzz.log 2>&1
	}
	# flake_only DIR TARGET: the failed run's only complaint is the
	# coordinator's deadline, and it wrote no failing input.
	flake_only() {
		grep -q '^    context deadline exceeded$' /tmp/fleetacs-fuzz.log &&
			! grep -q 'Failing input written to' /tmp/fleetacs-fuzz.log &&
			[ "$(grep -c '^--- FAIL' /tmp/fleetacs-fuzz.log)" = 1 ]
	}
	for dir in $modules; do
		for pkg in $(cd "$dir" && go list ./...); do
			pkgdir=$(cd "$dir" && go list -f '{{.Dir}}' "$pkg")
			targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u)
			for target in $targets; do
				if fuzz_one "$pkgdir" "$target"; then
					echo "ok   fuzz $target (${pkg})"
				elif flake_only "$pkgdir" "$target"; then
					# Go 1.26's fuzzing coordinator can report its own
					# -fuzztime deadline as a failure ("context deadline
					# exceeded", no failing input written; go.dev/issue/75804).
					# Such a run proves nothing either way: run it again.
					echo "again fuzz $target (${pkg}): the run ended with the coordinator's deadline error and no failing input"
					fuzz_one "$pkgdir" "$target" && echo "ok   fuzz $target (${pkg})" \
						|| { cat /tmp/fleetacs-fuzz.log; fail "fuzz $target in $pkg"; }
				else
					cat /tmp/fleetacs-fuzz.log
					fail "fuzz $target in $pkg"
				fi
			done
		done
	done
fi

if [ $status -ne 0 ]; then
	echo "FAILED" >&2
else
	echo "all checks passed"
fi
exit $status
