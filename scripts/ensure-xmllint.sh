#!/usr/bin/env bash
# ensure-xmllint.sh installs xmllint (Debian package libxml2-utils) when it is
# missing. The pkg/cwmp XSD test validates every encoded message with it and
# fails, rather than skips, without it. Safe to run any number of times.
set -euo pipefail

if command -v xmllint >/dev/null 2>&1; then
	exit 0
fi

run_as_root() {
	if [ "$(id -u)" -eq 0 ]; then
		"$@"
	elif command -v sudo >/dev/null 2>&1; then
		sudo "$@"
	else
		echo "ensure-xmllint: need root (or sudo) to install libxml2-utils" >&2
		exit 1
	fi
}

export DEBIAN_FRONTEND=noninteractive
run_as_root apt-get update
run_as_root apt-get install -y --no-install-recommends libxml2-utils
command -v xmllint >/dev/null 2>&1
