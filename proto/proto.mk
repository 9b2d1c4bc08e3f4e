# proto.mk: protobuf targets, included from the root Makefile
# (include proto/proto.mk). Paths are derived from this file's location so
# the fragment works whatever the including Makefile's directory variables.

PROTO_REPO_ROOT := $(abspath $(dir $(lastword $(MAKEFILE_LIST)))..)
PROTO_BIN := $(PROTO_REPO_ROOT)/bin

.PHONY: proto proto-tools proto-check proto-breaking

proto-tools: ## Install the pinned buf, protoc-gen-go and protoc-gen-go-grpc into ./bin
	@$(PROTO_REPO_ROOT)/scripts/proto-tools.sh

proto: proto-tools ## Lint the .proto sources and regenerate the Go code in proto/gen
	cd $(PROTO_REPO_ROOT)/proto && $(PROTO_BIN)/buf lint && $(PROTO_BIN)/buf generate

proto-check: ## Fail if the protos break lint or format, or proto/gen is stale
	@$(PROTO_REPO_ROOT)/scripts/check-proto.sh

proto-breaking: ## Also check the protos for breaking changes against the main branch
	@$(PROTO_REPO_ROOT)/scripts/check-proto.sh --breaking
