// Package cwmp is FleetACS's TR-069 (CWMP) wire codec and session state
// machine.
//
// It is pure protocol code: it does no I/O, no logging and keeps no global
// mutable state, so it can be fuzzed, benchmarked and reused by every service
// and tool (gateway, session workers, fleetctl, cpesim).
//
// Decoding is liberal, because real CPEs are: any namespace prefixes,
// cwmp-1-0 to cwmp-1-4 namespaces, a missing Header, SOAP-ENC arrayType
// present, absent or wrong, booleans as 0/1/true/false, values with and
// without xsi:type, a UTF-8 BOM, other charsets declared in the XML
// declaration. Encoding is strict: every message FleetACS emits validates
// against the CWMP XSD of its version (see the XSD test), uses the cwmp:
// prefix on RPC elements, SOAP-ENC arrayType with exact counts and xsi:type on
// every value, and carries an XML declaration only when asked to (the CPE's
// own messages carried one).
//
// The rules followed are summarised in docs/protocol.md; section
// numbers in comments ("docs/protocol.md §2.2") refer to it.
package cwmp
