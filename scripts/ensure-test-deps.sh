#!/usr/bin/env bash
# ensure-test-deps.sh installs what the FleetACS tests need and is missing:
# redis-server, nats-server (the clustered tests run three of them; Debian
# puts it in /usr/sbin), a PostgreSQL server (FerretDB's backend), xmllint,
# FerretDB itself built into <repo>/bin/ferretdb, and helm (the Helm chart's
# lint and render checks, deploy/check) built into <repo>/bin/helm.
#
# It is idempotent and runs on every `make test`, so the path where everything
# is present must stay fast (well under a second): it only looks at files and
# never touches the network then. It reaches out only to Debian's apt
# repositories and the Go module proxy, and only for what is missing; it
# prints one line per thing it installed.
#
# Environment: GO (default: go) names the Go command.
set -euo pipefail

readonly FERRETDB_VERSION=v1.24.2
readonly FERRETDB_MODULE=github.com/FerretDB/FerretDB
readonly HELM_VERSION=v4.3.2
readonly HELM_MODULE=helm.sh/helm/v4

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}

# Package installs need root; use sudo when we are not root and it exists.
as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "ensure-test-deps: need root (or sudo) to run: $*" >&2
		return 1
	fi
}

# pg_bindir prints the newest /usr/lib/postgresql/<major>/bin that holds a
# complete server (initdb, pg_ctl, postgres), or nothing.
pg_bindir() {
	local d best=""
	for d in /usr/lib/postgresql/*/bin; do
		if [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && [ -x "$d/postgres" ]; then
			best=$d
		fi
	done
	# The glob expands in lexical order; majors 10+ all have two digits, so
	# the last complete one is the newest.
	printf '%s' "$best"
}

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
{ command -v nats-server >/dev/null 2>&1 || [ -x /usr/sbin/nats-server ]; } || missing+=(nats-server)
[ -n "$(pg_bindir)" ] || missing+=(postgresql)
command -v xmllint >/dev/null 2>&1 || missing+=(libxml2-utils)

if [ "${#missing[@]}" -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	# Refresh the package lists only when there is something to install.
	as_root apt-get update -qq >/dev/null
	as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	for p in "${missing[@]}"; do
		echo "ensure-test-deps: installed $p (apt)"
	done
fi

# ferretdb_ok tells whether bin/ferretdb exists and is the pinned version.
# Running it costs a few milliseconds and catches a stale binary after the
# pin moves.
ferretdb_ok() {
	local out
	[ -x "$repo/bin/ferretdb" ] || return 1
	out=$("$repo/bin/ferretdb" --version 2>/dev/null) || return 1
	grep -q "version: $FERRETDB_VERSION\$" <<<"$out"
}

build_ferretdb() {
	local tmp dir
	if ! command -v "$GO" >/dev/null 2>&1; then
		echo "ensure-test-deps: $GO not found: Go is needed to build bin/ferretdb" >&2
		return 1
	fi
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/ferretdb-build.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now: it is local.
	trap "rm -rf '$tmp'" EXIT

	# The module cache holds the source read-only; the module zip ships no
	# build/version/version.txt, and a binary built without one panics at
	# start, so build from a writable copy with the file filled in.
	dir=$(cd "$tmp" && GOWORK=off GOFLAGS=-mod=mod "$GO" mod download -json "$FERRETDB_MODULE@$FERRETDB_VERSION" |
		sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	if [ -z "$dir" ] || [ ! -d "$dir" ]; then
		echo "ensure-test-deps: go mod download $FERRETDB_MODULE@$FERRETDB_VERSION gave no source directory" >&2
		return 1
	fi
	cp -R "$dir" "$tmp/src"
	chmod -R u+w "$tmp/src"
	printf '%s\n' "$FERRETDB_VERSION" >"$tmp/src/build/version/version.txt"

	mkdir -p "$repo/bin"
	(cd "$tmp/src" && GOWORK=off GOFLAGS='-mod=mod -buildvcs=false' CGO_ENABLED=0 \
		"$GO" build -trimpath -o "$tmp/ferretdb" ./cmd/ferretdb)
	# Rename into place so a concurrent run or test never sees half a file.
	mv -f "$tmp/ferretdb" "$repo/bin/ferretdb"

	rm -rf "$tmp"
	trap - EXIT
}

if ! ferretdb_ok; then
	build_ferretdb
	if ! ferretdb_ok; then
		echo "ensure-test-deps: built bin/ferretdb does not report version $FERRETDB_VERSION" >&2
		exit 1
	fi
	echo "ensure-test-deps: installed bin/ferretdb ($FERRETDB_MODULE $FERRETDB_VERSION, built from the Go module proxy)"
fi

# helm_ok tells whether bin/helm exists and is the pinned version.
helm_ok() {
	local out
	[ -x "$repo/bin/helm" ] || return 1
	out=$("$repo/bin/helm" version --template '{{.Version}}' 2>/dev/null) || return 1
	[ "$out" = "$HELM_VERSION" ]
}

if ! helm_ok; then
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/helm-build.XXXXXX")
	# shellcheck disable=SC2064 # expand $tmp now.
	trap "rm -rf '$tmp'" EXIT
	# go install leaves the version at the source's "v4.3"; the release
	# builds set it by -X, and so does this one, so that helm_ok can check it.
	(cd "$tmp" && GOWORK=off GOBIN="$tmp" CGO_ENABLED=0 "$GO" install -trimpath \
		-ldflags "-s -w -X $HELM_MODULE/internal/version.version=$HELM_VERSION" "$HELM_MODULE/cmd/helm@$HELM_VERSION")
	mkdir -p "$repo/bin"
	mv -f "$tmp/helm" "$repo/bin/helm"
	rm -rf "$tmp"
	trap - EXIT
	if ! helm_ok; then
		echo "ensure-test-deps: built bin/helm does not report version $HELM_VERSION" >&2
		exit 1
	fi
	echo "ensure-test-deps: installed bin/helm ($HELM_MODULE $HELM_VERSION, built from the Go module proxy)"
fi
