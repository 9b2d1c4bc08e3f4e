#!/usr/bin/env bash
# Runs every FleetACS test: static checks, each workspace module's tests with
# the race detector, then the fuzz targets for a short while. It installs or
# builds what the tests need first (scripts/ensure-test-deps.sh), so it works
# on a fresh Debian machine with Go installed.
#
# Environment:
#   FUZZTIME   how long each fuzz target runs (default 10s under CI, else 0 = skip fuzzing)
#   TESTFLAGS  extra flags for go test (e.g. -short, -run=Decode)
#   FLEETACS_TEST_REDIS_ADDR / FLEETACS_TEST_NATS_URL / FLEETACS_TEST_MONGODB_URI
#              use these running servers instead of starting private ones
set -uo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ -x scripts/ensure-test-deps.sh ]; then
	scripts/ensure-test-deps.sh || { echo "ensure-test-deps failed" >&2; exit 1; }
fi

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

if [ -x scripts/check-proto.sh ]; then
	echo "== generated code is current"
	scripts/check-proto.sh || fail "generated protobuf code is stale: run make proto"
fi

echo "== go test -race"
for dir in $modules; do
	# shellcheck disable=SC2086
	(cd "$dir" && go test -race -count=1 ${TESTFLAGS:-} ./...) || fail "tests in ${dir#$root/}"
done

fuzztime=${FUZZTIME:-}
if [ -z "$fuzztime" ] && [ "${CI:-}" = "true" ]; then fuzztime=10s; fi
if [ -n "$fuzztime" ] && [ "$fuzztime" != "0" ]; then
	echo "== fuzz ($fuzztime per target)"
	for dir in $modules; do
		for pkg in $(cd "$dir" && go list ./...); do
			pkgdir=$(cd "$dir" && go list -f '{{.Dir}}' "$pkg")
			targets=$(grep -ho '^func Fuzz[A-Za-z0-9_]*' "$pkgdir"/*_test.go 2>/dev/null | sed 's/^func //' | sort -u)
			for target in $targets; do
				(cd "$pkgdir" && go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" -fuzzminimizetime=2s .) >/tmp/fleetacs-fuzz.log 2>&1 \
					&& echo "ok   fuzz $target (${pkg})" \
					|| { cat /tmp/fleetacs-fuzz.log; fail "fuzz $target in $pkg"; }
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
