module github.com/fleetacs/fleetacs/tools/cpesim

go 1.26
