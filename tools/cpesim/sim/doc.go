// Package sim simulates TR-069 CPEs and generates CWMP load against an ACS.
//
// A Simulator holds N Devices, each with its own identity (OUI,
// ProductClass, SerialNumber derived from an index and a seed), credentials
// and parameter tree built from a Broadband Forum data model (TR-181
// "Device." or TR-098 "InternetGatewayDevice.", compiled into the simulator
// as tables generated from the BBF's XML, see datamodels.go). Each
// device speaks CWMP as a CPE through pkg/cwmp: it opens sessions with an
// Inform, answers HTTP authentication challenges, sends its own requests
// (TransferComplete, DUStateChangeComplete), then answers every ACS request
// until the ACS ends the session with an empty response. Work the ACS asks
// for that outlives a session (Reboot, FactoryReset, Download, Upload,
// ScheduleInform, ScheduleDownload, ChangeDUState) is carried out after the
// session and reported in a later one with the events the protocol
// prescribes.
//
// Run drives the devices in one of several load modes (closed loop with a
// fixed concurrency, open loop at a target rate, periodic informs, a boot
// storm) and returns a Summary of what happened: sessions, latencies,
// HTTP statuses, retries and errors by kind.
//
// The simulator is built to be cheap on the client side, because benchmarks
// run it on the same small machine as the ACS: it speaks HTTP/1.1 over its
// own connections with pooled buffers instead of net/http's client, caches
// each device's Inform parameters, and shares one parameter-tree template
// between all devices of a model, copying a device's tree only when the ACS
// changes its structure.
package sim
