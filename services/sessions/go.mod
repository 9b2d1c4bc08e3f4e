module github.com/fleetacs/fleetacs/services/sessions

go 1.26
