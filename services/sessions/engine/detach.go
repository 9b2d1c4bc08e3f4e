package engine

import (
	"strings"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// detachThreshold is the body size above which the engine copies out what
// a session keeps of a message before stepping it.
//
// The decoder hands out strings that share the memory of the whole body,
// so one kept name would keep a whole Inform of 30,000 parameters (3.7 MB)
// alive for the life of the session. Small bodies cost little to keep and
// copying every string of every periodic Inform would cost allocations on
// the hot path, so only large bodies are detached: the strings a session
// keeps (the Inform's identity, events and first MaxInformParameters
// parameters; the names and values of GetParameterNames and
// GetParameterValues answers) are copied into one new block of their own.
const detachThreshold = 64 << 10

// detach copies the strings a session keeps of env's message out of the
// body they were decoded from; maxInform bounds the Inform parameters
// copied (the rest are dropped by the session anyway).
func detach(env *cwmp.Envelope, maxInform int) {
	env.Namespace = strings.Clone(env.Namespace)
	env.Header.ID = strings.Clone(env.Header.ID)
	env.Header.SupportedCWMPVersions = strings.Clone(env.Header.SupportedCWMPVersions)
	var strs []*string
	switch m := env.Body.(type) {
	case *cwmp.Inform:
		id := &m.DeviceID
		strs = append(strs, &id.Manufacturer, &id.OUI, &id.ProductClass, &id.SerialNumber)
		for i := range m.Events {
			strs = append(strs, &m.Events[i].Code, &m.Events[i].CommandKey)
		}
		for i := range m.ParameterList[:min(len(m.ParameterList), maxInform)] {
			pv := &m.ParameterList[i]
			strs = append(strs, &pv.Name, &pv.Value, &pv.Type)
		}
	case *cwmp.GetParameterNamesResponse:
		for i := range m.ParameterList {
			strs = append(strs, &m.ParameterList[i].Name)
		}
	case *cwmp.GetParameterValuesResponse:
		for i := range m.ParameterList {
			pv := &m.ParameterList[i]
			strs = append(strs, &pv.Name, &pv.Value, &pv.Type)
		}
	default:
		return
	}
	copyOut(strs)
}

// copyOut points every string of strs into one new block holding them all.
func copyOut(strs []*string) {
	n := 0
	for _, p := range strs {
		n += len(*p)
	}
	buf := make([]byte, 0, n)
	for _, p := range strs {
		buf = append(buf, *p...)
	}
	block := string(buf)
	off := 0
	for _, p := range strs {
		l := len(*p)
		*p = block[off : off+l]
		off += l
	}
}
