module github.com/fleetacs/fleetacs/services/tasks

go 1.26
