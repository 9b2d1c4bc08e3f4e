module github.com/fleetacs/fleetacs/proto

go 1.26
