module github.com/fleetacs/fleetacs/cmd/fleetctl

go 1.26.0

require (
	github.com/fleetacs/fleetacs/pkg v0.0.0
	go.yaml.in/yaml/v3 v3.0.4
	google.golang.org/genproto/googleapis/rpc v0.0.0-20261104224025-d1e00e9f33ab
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.34.0 // indirect
	golang.org/x/net v0.62.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.44.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20261110000943-09e21b237f2c // indirect
)

require (
	github.com/beevik/etree v1.8.1 // indirect
	github.com/fleetacs/fleetacs/proto v0.0.0
)

replace github.com/fleetacs/fleetacs/pkg => ../../pkg

replace github.com/fleetacs/fleetacs/proto => ../../proto
