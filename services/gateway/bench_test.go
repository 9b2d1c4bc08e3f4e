package gateway

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// benchForwarder answers every Inform with one canned InformResponse, as an
// in-memory worker would, and remembers the session it opened.
type benchForwarder struct {
	reply []byte
	last  *Exchange
}

func (f *benchForwarder) Exchange(_ context.Context, ex *Exchange) (*Reply, error) {
	f.last = ex
	return &Reply{Status: http.StatusOK, Body: f.reply, SetSessionCookie: ex.SessionID, Worker: "w1"}, nil
}

func (f *benchForwarder) Abandon(context.Context, *Abandonment) error { return nil }

// BenchmarkGatewayInformExchange measures one Inform POST through the
// gateway's handler: body read, RPC sniffing and Inform decoding,
// authentication, admission, session cap, device lease, forwarding to an
// in-memory worker, affinity record and the reply. The session it opens is
// closed outside the timer so that every iteration starts from the same
// state.
func BenchmarkGatewayInformExchange(b *testing.B) {
	inf := &cwmp.Inform{
		DeviceID:     cwmp.DeviceID{Manufacturer: "Acme", OUI: "00D09E", ProductClass: "Router", SerialNumber: "SN1"},
		Events:       []cwmp.Event{{Code: "2 PERIODIC"}},
		MaxEnvelopes: 1, CurrentTime: "2026-03-01T12:00:00Z",
	}
	for i := range 12 {
		inf.ParameterList = append(inf.ParameterList, cwmp.ParameterValue{Name: fmt.Sprintf("Device.DeviceInfo.X_Param%d", i), Value: "value", Type: "xsd:string"})
	}
	body, err := cwmp.Encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Header: cwmp.Header{ID: "1", HasID: true}, Body: inf})
	if err != nil {
		b.Fatal(err)
	}
	reply, err := cwmp.Encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Header: cwmp.Header{ID: "1", HasID: true}, Body: &cwmp.InformResponse{MaxEnvelopes: 1}})
	if err != nil {
		b.Fatal(err)
	}

	for _, mode := range []string{"anonymous", "digest"} {
		b.Run(mode, func(b *testing.B) {
			cfg := DefaultConfig()
			cfg.AdmissionRate = 1e9
			cfg.AdmissionBurst = 1 << 30
			if mode == "anonymous" {
				cfg.AuthAnonymous = true
			} else {
				cfg.AuthSharedUsername, cfg.AuthSharedPassword = "cpe", "secret"
			}
			fwd := &benchForwarder{reply: reply}
			mem := affinity.NewMemory(nil)
			leases, aff := mem.Leases(), mem.Affinity()
			s, err := New(cfg, Deps{Forwarder: fwd, Leases: leases, Affinity: aff})
			if err != nil {
				b.Fatal(err)
			}
			// A CPE's next nonce count for every request: a header used
			// before is a replay (nonce counts are tracked).
			var d *digestClient
			nextAuthz := func() string {
				if d == nil {
					return ""
				}
				return d.header("/")[len("Authorization: "):]
			}
			if mode == "digest" {
				d = &digestClient{user: "cpe", pass: "secret", realm: cfg.AuthRealm, nonce: s.auth.nonces.mint(time.Now())}
			}
			authz := nextAuthz()
			h := s.Handler()
			rd := bytes.NewReader(body)
			req := httptest.NewRequest(http.MethodPost, "/", rd)
			req.RemoteAddr = "192.0.2.10:40000"
			req.Header.Set("Content-Type", `text/xml; charset="utf-8"`)
			req.Header.Set("SOAPAction", "")
			if authz != "" {
				req.Header.Set("Authorization", authz)
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for range b.N {
				rd.Reset(body)
				req.Body = nopCloser{rd}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, req)
				if w.Code != http.StatusOK {
					b.Fatalf("status %d", w.Code)
				}
				b.StopTimer()
				ex := fwd.last
				s.sessions.end(ex.SessionID)
				_ = aff.Delete(ctx, SessionRecord{SessionID: ex.SessionID, ClientIP: "192.0.2.10"})
				_ = leases.Release(ctx, ex.Tenant, ex.DeviceKey, ex.SessionID)
				if authz != "" {
					req.Header.Set("Authorization", nextAuthz())
				}
				b.StartTimer()
			}
		})
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }
