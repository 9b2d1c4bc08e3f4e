# syntax=docker/dockerfile:1
# FleetACS image: fleetacs, fleetctl and cpesim as static binaries on
# distroless/static (CA certificates, tzdata, /etc/passwd, no shell), run as
# the non-root user 65532. Entry point: fleetacs; the default command, all,
# runs every service in one process (docs/deploy.md).
#
#   docker build -t fleetacs .
#
# CI builds the same file layout without a Docker engine, reproducibly, with
# deploy/imagebuild (make image).

ARG GO_VERSION=1.26.8

FROM golang:${GO_VERSION}-bookworm AS build
WORKDIR /src
ENV CGO_ENABLED=0 GOFLAGS=-trimpath GOTOOLCHAIN=local
# The module files first, so that the dependency download stays cached
# while only sources change.
COPY go.work go.work.sum ./
COPY pkg/go.mod pkg/go.sum pkg/
COPY proto/go.mod proto/go.sum proto/
COPY services/campaigns/go.mod services/campaigns/go.sum services/campaigns/
COPY services/files/go.mod services/files/go.sum services/files/
COPY services/gateway/go.mod services/gateway/go.sum services/gateway/
COPY services/inventory/go.mod services/inventory/go.sum services/inventory/
COPY services/notifier/go.mod services/notifier/go.sum services/notifier/
COPY services/sessions/go.mod services/sessions/go.sum services/sessions/
COPY services/tasks/go.mod services/tasks/go.sum services/tasks/
COPY cmd/fleetacs/go.mod cmd/fleetacs/go.sum cmd/fleetacs/
COPY cmd/fleetctl/go.mod cmd/fleetctl/go.sum cmd/fleetctl/
COPY tools/cpesim/go.mod tools/cpesim/go.sum tools/cpesim/
COPY tools/taskload/go.mod tools/taskload/go.sum tools/taskload/
COPY tools/otlpsink/go.mod tools/otlpsink/go.sum tools/otlpsink/
COPY deploy/go.mod deploy/go.sum deploy/
RUN --mount=type=cache,target=/go/pkg/mod \
	cd cmd/fleetacs && go mod download && cd ../fleetctl && go mod download && cd ../../tools/cpesim && go mod download
COPY . .
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
	mkdir -p /out/usr/local/bin /out/var/lib/fleetacs/data && \
	go build -ldflags='-s -w' -o /out/usr/local/bin/fleetacs ./cmd/fleetacs && \
	go build -ldflags='-s -w' -o /out/usr/local/bin/fleetctl ./cmd/fleetctl && \
	go build -ldflags='-s -w' -o /out/usr/local/bin/cpesim ./tools/cpesim && \
	chmod 0700 /out/var/lib/fleetacs/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/usr/local/bin/ /usr/local/bin/
# The working directory holds data/ (the default -data-dir): fleetctl run
# there finds the first admin token the inventory writes (docs/security.md).
COPY --from=build --chown=65532:65532 /out/var/lib/fleetacs /var/lib/fleetacs
USER 65532:65532
WORKDIR /var/lib/fleetacs
# CWMP, CWMP over TLS (when -gateway.tls-listen-addr=:7548), admin
# (/healthz, /readyz, /metrics), public gRPC, internal gRPC, HTTP API, STUN.
EXPOSE 7547 7548 9100 9300 9301 9380 3478/udp
ENTRYPOINT ["/usr/local/bin/fleetacs"]
CMD ["all"]
