#!/usr/bin/env bash
# check-proto.sh checks the protobuf module (CI and `make proto-check`):
#   1. buf lint (rules in proto/buf.yaml);
#   2. buf format: the sources are in buf's canonical layout;
#   3. staleness: generating into a temporary directory reproduces the
#      committed proto/gen byte for byte.
# With --breaking it also runs buf breaking against the main branch (or the
# buf input in FLEETACS_PROTO_AGAINST), for the public API promise.
#
# Installs the pinned tools first (scripts/proto-tools.sh), so it works on a
# fresh machine with only Go and the module proxy.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"

breaking=false
for arg in "$@"; do
	case "$arg" in
	--breaking) breaking=true ;;
	*)
		echo "usage: $0 [--breaking]" >&2
		exit 2
		;;
	esac
done

"$root/scripts/proto-tools.sh"

cd "$root/proto"

echo "check-proto: buf lint"
"$bin/buf" lint

echo "check-proto: buf format"
if ! "$bin/buf" format --diff --exit-code; then
	echo "check-proto: .proto sources are not formatted; run: (cd proto && ../bin/buf format -w)" >&2
	exit 1
fi

echo "check-proto: generated code is up to date"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin/buf" generate --output "$tmp"
if ! diff -r -u gen "$tmp/gen"; then
	echo "check-proto: proto/gen is stale; run 'make proto' and commit the result" >&2
	exit 1
fi

if $breaking; then
	against="${FLEETACS_PROTO_AGAINST:-$root/.git#branch=main,subdir=proto}"
	echo "check-proto: buf breaking against $against"
	"$bin/buf" breaking --against "$against"
fi

echo "check-proto: ok"
