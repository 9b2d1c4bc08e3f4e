package sessions

import (
	"context"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// TestOutsideSessionAnswers: every kind of CPE message that arrives where
// no session is open, as the gateway forwards it (a new session ID, no
// device key, no lease), gets an answer that does not read as a finished
// session (docs/protocol.md §4.3 rule 1): a CPE request or an unknown
// method fault 8003 with HTTP 400, a response or fault HTTP 400 without a
// body, an Inform naming no device fault 8003 with HTTP 400; only the empty
// POST gets 204.
func TestOutsideSessionAnswers(t *testing.T) {
	h := newMemoryHarness(t)
	w := h.worker("w1", nil)
	c := newCPE(t, "SN-OUT", tree300())
	outside := func(name string, body []byte) *sessionsv1.ExchangeResponse {
		t.Helper()
		return exchange(t, w.client, &sessionsv1.ExchangeRequest{SessionId: "out-" + name, NewSession: true, Tenant: testTenant,
			Body: body, RemoteAddr: "203.0.113.7:40001"})
	}
	enc := func(m cwmp.Message) []byte {
		return c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Header: cwmp.Header{ID: "x1", HasID: true}, Body: m})
	}

	requests := []cwmp.Message{
		&cwmp.GetRPCMethods{},
		&cwmp.TransferComplete{CommandKey: "k"},
		&cwmp.AutonomousTransferComplete{FileType: "1 Firmware Upgrade Image"},
		&cwmp.RequestDownload{FileType: "1 Firmware Upgrade Image"},
		&cwmp.DUStateChangeComplete{Results: []cwmp.OpResult{{UUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", CurrentState: "Installed"}}},
		&cwmp.AutonomousDUStateChangeComplete{Results: []cwmp.AutonOpResult{{OpResult: cwmp.OpResult{UUID: "6ba7b810-9dad-11d1-80b4-00c04fd430c8", CurrentState: "Installed"}, OperationPerformed: "Install"}}},
		&cwmp.Kicked{Command: "c", Referer: "r", Arg: "a", Next: "http://lan/"},
		&cwmp.GetParameterValues{ParameterNames: []string{"Device."}}, // an ACS method sent by the CPE
	}
	for _, m := range requests {
		resp := outside(m.Method(), enc(m))
		if resp.HttpStatus != 400 || !resp.SessionEnded || method(t, resp) != "Fault8003" {
			t.Errorf("%s outside a session: %d ended %t %s", m.Method(), resp.HttpStatus, resp.SessionEnded, method(t, resp))
		}
	}
	vendor := []byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0"><s:Body><cwmp:X_ACME_Frob/></s:Body></s:Envelope>`)
	if resp := outside("vendor", vendor); resp.HttpStatus != 400 || method(t, resp) != "Fault8003" {
		t.Errorf("vendor method outside a session: %d %s", resp.HttpStatus, method(t, resp))
	}

	responses := []cwmp.Message{
		&cwmp.GetRPCMethodsResponse{MethodList: []string{"Inform"}}, &cwmp.SetParameterValuesResponse{}, &cwmp.GetParameterValuesResponse{},
		&cwmp.GetParameterNamesResponse{}, &cwmp.SetParameterAttributesResponse{}, &cwmp.GetParameterAttributesResponse{},
		&cwmp.AddObjectResponse{InstanceNumber: 1}, &cwmp.DeleteObjectResponse{}, &cwmp.DownloadResponse{},
		&cwmp.RebootResponse{}, &cwmp.GetQueuedTransfersResponse{}, &cwmp.ScheduleInformResponse{},
		&cwmp.SetVouchersResponse{}, &cwmp.GetOptionsResponse{}, &cwmp.UploadResponse{}, &cwmp.FactoryResetResponse{},
		&cwmp.GetAllQueuedTransfersResponse{}, &cwmp.ScheduleDownloadResponse{}, &cwmp.CancelTransferResponse{},
		&cwmp.ChangeDUStateResponse{}, cwmp.NewFault(cwmp.FaultInvalidParameterName),
	}
	for _, m := range responses {
		resp := outside(m.Method(), enc(m))
		if resp.HttpStatus != 400 || !resp.SessionEnded || len(resp.Body) != 0 {
			t.Errorf("%s outside a session: %d ended %t body %q; want 400 without a body", m.Method(), resp.HttpStatus, resp.SessionEnded, resp.Body)
		}
	}

	if resp := outside("empty", nil); resp.HttpStatus != 204 || !resp.SessionEnded {
		t.Errorf("empty POST outside a session: %d", resp.HttpStatus)
	}

	// An Inform that names no device, without the lease the gateway does
	// not take for it, and with one (an older gateway took a lease for the
	// key "-"): fault 8003, nothing left behind.
	// (Written by hand: the encoder refuses to write such an Inform.)
	noDevice := []byte(`<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" xmlns:cwmp="urn:dslforum-org:cwmp-1-0">` +
		`<s:Header><cwmp:ID s:mustUnderstand="1">i1</cwmp:ID></s:Header><s:Body><cwmp:Inform>` +
		`<DeviceId><Manufacturer>Acme</Manufacturer><OUI> </OUI><ProductClass>Router</ProductClass><SerialNumber>SN-OUT</SerialNumber></DeviceId>` +
		`<Event/><MaxEnvelopes>1</MaxEnvelopes><CurrentTime>2026-03-01T12:00:00Z</CurrentTime><RetryCount>0</RetryCount><ParameterList/>` +
		`</cwmp:Inform></s:Body></s:Envelope>`)
	if resp := outside("inform", noDevice); resp.HttpStatus != 400 || !resp.SessionEnded || method(t, resp) != "Fault8003" {
		t.Errorf("Inform without an OUI, no lease: %d ended %t %s", resp.HttpStatus, resp.SessionEnded, method(t, resp))
	}
	req := h.open(c, "leased")
	req.Body = noDevice
	if resp := exchange(t, w.client, req); resp.HttpStatus != 400 || !resp.SessionEnded || method(t, resp) != "Fault8003" {
		t.Errorf("Inform without an OUI, with a lease: %d ended %t %s", resp.HttpStatus, resp.SessionEnded, method(t, resp))
	}
	if _, held, _ := h.store.Leases.Holder(context.Background(), testTenant, c.key); held {
		t.Error("the lease of a refused Inform is still held")
	}
	if n := w.Sessions(); n != 0 {
		t.Errorf("worker holds %d sessions", n)
	}
	if accepted, refused := h.inv.records(); len(accepted)+len(refused) != 0 {
		t.Errorf("inventory got %d session records for messages outside any", len(accepted)+len(refused))
	}
}
