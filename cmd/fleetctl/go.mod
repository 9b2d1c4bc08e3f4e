module github.com/fleetacs/fleetacs/cmd/fleetctl

go 1.26.0

require (
	github.com/fleetacs/fleetacs/pkg v0.0.0
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260928230214-8a89bd6388cc
	google.golang.org/grpc v1.85.0
	google.golang.org/protobuf v1.36.12
)

require (
	golang.org/x/net v0.60.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

require (
	github.com/beevik/etree v1.8.1 // indirect
	github.com/fleetacs/fleetacs/proto v0.0.0
)

replace github.com/fleetacs/fleetacs/pkg => ../../pkg

replace github.com/fleetacs/fleetacs/proto => ../../proto
