module github.com/fleetacs/fleetacs/services/notifier

go 1.26
