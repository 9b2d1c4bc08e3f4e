# FleetACS. `make help` lists the targets.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := $(CURDIR)/bin
MODULES = $(shell $(GO) list -m -f '{{.Dir}}')

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | sort | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-12s %s\n", $$1, $$2}'

.PHONY: build
build: ## build fleetacs, fleetctl and cpesim into ./bin
	@mkdir -p $(BIN)
	cd cmd/fleetacs && $(GO) build -o $(BIN)/fleetacs .
	cd cmd/fleetctl && $(GO) build -o $(BIN)/fleetctl .
	cd tools/cpesim && $(GO) build -o $(BIN)/cpesim .

.PHONY: image
image: ## build the container image without Docker: static binaries in ./bin/static, OCI layout in ./bin/image/oci, docker-load tarball ./bin/image/fleetacs.tar
	@mkdir -p $(BIN)/static
	cd cmd/fleetacs && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/static/fleetacs .
	cd cmd/fleetctl && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/static/fleetctl .
	cd tools/cpesim && CGO_ENABLED=0 $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/static/cpesim .
	cd deploy && $(GO) run ./imagebuild -bin $(BIN)/static -ca-file "$$(ls /etc/ssl/certs/ca-certificates.crt 2>/dev/null)" \
	  -out $(BIN)/image/oci -tarball $(BIN)/image/fleetacs.tar -tag $${IMAGE_TAG:-fleetacs:dev} \
	  -epoch $${SOURCE_DATE_EPOCH:-$$(git log -1 --format=%ct)}

.PHONY: run
run: build ## run the whole platform in one process on the embedded default (data in ./data)
	$(BIN)/fleetacs -gateway.auth-anonymous -notifier.allow-loopback -log.format=text all

.PHONY: test
test: ## run every test (installs what the tests need; -race; brief fuzzing under CI=true)
	scripts/test.sh

.PHONY: bench
bench: ## run the benchmarks and print their figures (see BENCHMARKS.md)
	scripts/bench.sh
	scripts/bench-platform.sh
	scripts/bench-tasks.sh
	scripts/bench-presets.sh
	scripts/bench-campaign.sh

.PHONY: datamodels
datamodels: ## regenerate cpesim's data-model tables from the BBF XML (BBF_DIR=dir, default shared/tr069 beside the repository)
	cd tools/cpesim && FLEETACS_BBF_DIR="$(BBF_DIR)" $(GO) generate ./sim

.PHONY: fmt
fmt: ## gofmt every Go file
	git ls-files -co --exclude-standard '*.go' | grep -v '\.pb\.go$$' | xargs -r gofmt -w

.PHONY: lint
lint: ## go vet and gofmt check over every module
	@bad=$$(git ls-files -co --exclude-standard '*.go' | grep -v '\.pb\.go$$' | xargs -r gofmt -l); \
	  if [ -n "$$bad" ]; then echo "gofmt needed: $$bad"; exit 1; fi
	@for d in $(MODULES); do (cd $$d && $(GO) vet ./...) || exit 1; done

.PHONY: tidy
tidy: ## go mod tidy in every module
	@for d in $(MODULES); do (cd $$d && GOWORK=off $(GO) mod tidy) || exit 1; done

-include proto/proto.mk
