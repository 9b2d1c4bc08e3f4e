module github.com/fleetacs/fleetacs/pkg

go 1.26

require github.com/beevik/etree v1.8.1 // indirect
