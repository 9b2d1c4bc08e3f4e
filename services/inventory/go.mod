module github.com/fleetacs/fleetacs/services/inventory

go 1.26
