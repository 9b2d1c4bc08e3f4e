module github.com/fleetacs/fleetacs/cmd/fleetctl

go 1.26
