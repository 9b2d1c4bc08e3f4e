module github.com/fleetacs/fleetacs/tools/cpesim

go 1.26.0

require github.com/fleetacs/fleetacs/pkg v0.0.0

require github.com/beevik/etree v1.8.1 // indirect

replace github.com/fleetacs/fleetacs/pkg => ../../pkg

replace github.com/fleetacs/fleetacs/proto => ../../proto
