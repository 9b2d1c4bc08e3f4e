#!/usr/bin/env bash
# proto-tools.sh installs the pinned protobuf toolchain into <repo>/bin:
# buf (lint, breaking-change checks and the compiler; no protoc needed),
# protoc-gen-go, protoc-gen-go-grpc, and grpc-gateway's
# protoc-gen-grpc-gateway and protoc-gen-openapiv2 (the HTTP/JSON API,
# docs/api-http.md). Generated code embeds the plugin
# versions, so every machine must run exactly these builds for `make proto`
# to be byte-for-byte reproducible.
#
# Idempotent: a tool whose binary already records the pinned module version
# (read with `go version -m`, without running it) is left alone.
#
# The directory is fixed because proto/buf.gen.yaml names the plugins by
# their path in it.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bin="$root/bin"

# buf v1.75.0 is the newest release that builds with Go 1.26.
BUF_VERSION="v1.75.0"
# protoc-gen-go must match the google.golang.org/protobuf runtime that the
# proto module requires, so it is read from proto/go.mod rather than pinned
# twice. GOWORK=off: the workspace may select a newer runtime for other
# modules, but the generated code is built against proto/go.mod.
PROTOC_GEN_GO_VERSION="$(cd "$root/proto" && GOWORK=off go list -m -f '{{.Version}}' google.golang.org/protobuf)"
PROTOC_GEN_GO_GRPC_VERSION="v1.6.2"
# grpc-gateway's plugins must match the runtime that proto/go.mod requires
# (the generated handlers call it), so the version is read from there too.
GRPC_GATEWAY_VERSION="$(cd "$root/proto" && GOWORK=off go list -m -f '{{.Version}}' github.com/grpc-ecosystem/grpc-gateway/v2)"

# installed_version prints the main module version recorded in a Go binary,
# or nothing when the binary is missing or not a Go binary.
installed_version() {
	local exe="$1"
	[[ -x "$exe" ]] || return 0
	go version -m "$exe" 2>/dev/null | awk '$1 == "mod" { print $3; exit }'
}

install_tool() {
	local name="$1" pkg="$2" version="$3"
	local have
	have="$(installed_version "$bin/$name")"
	if [[ "$have" == "$version" ]]; then
		echo "proto-tools: $name $version already installed"
		return 0
	fi
	echo "proto-tools: installing $name $version (had: ${have:-none})"
	local start=$SECONDS
	GOWORK=off GOBIN="$bin" go install "$pkg@$version"
	echo "proto-tools: $name $version installed in $((SECONDS - start))s"
}

mkdir -p "$bin"
install_tool protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go "$PROTOC_GEN_GO_VERSION"
install_tool protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc "$PROTOC_GEN_GO_GRPC_VERSION"
install_tool protoc-gen-grpc-gateway github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway "$GRPC_GATEWAY_VERSION"
install_tool protoc-gen-openapiv2 github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 "$GRPC_GATEWAY_VERSION"
install_tool buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION"
