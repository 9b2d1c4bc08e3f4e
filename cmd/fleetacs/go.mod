module github.com/fleetacs/fleetacs/cmd/fleetacs

go 1.26
