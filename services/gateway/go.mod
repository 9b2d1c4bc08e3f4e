module github.com/fleetacs/fleetacs/services/gateway

go 1.26
