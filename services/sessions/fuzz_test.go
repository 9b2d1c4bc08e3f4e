package sessions

import (
	"context"
	"strconv"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/cwmp"
	sessionsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/sessions/v1"
)

// FuzzWorkerExchange feeds arbitrary bodies to a live session, in the middle
// of a discovery, and outside any session: the worker always answers with a
// status the gateway knows and never a gRPC error, and the session still
// ends cleanly.
func FuzzWorkerExchange(f *testing.F) {
	c := newCPE(f, "SN-FZ", tree300())
	f.Add([]byte(nil))
	f.Add([]byte("<not-xml"))
	f.Add(c.informBody("1 BOOT"))
	f.Add(c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Header: cwmp.Header{ID: "x.1", HasID: true},
		Body: &cwmp.GetParameterNamesResponse{ParameterList: []cwmp.ParameterInfo{{Name: "Device.A"}}}}))
	f.Add(c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_2, Version: cwmp.V1_2, Body: cwmp.NewFault(cwmp.FaultCPEResourcesExceeded)}))
	f.Add(c.encode(&cwmp.Envelope{Namespace: cwmp.NS1_0, Body: &cwmp.TransferComplete{CommandKey: "k", StartTime: cwmp.UnknownTime, CompleteTime: cwmp.UnknownTime}}))

	mem := affinity.NewMemory(nil)
	st := mem.Store()
	w, err := New(testConfig(), Deps{Inventory: &knownInventory{}, Leases: st.Leases, Checkpoints: st.Checkpoints, Registry: st.Registry, Sessions: st.Sessions})
	if err != nil {
		f.Fatal(err)
	}
	inform := c.informBody("0 BOOTSTRAP")
	n := 0
	f.Fuzz(func(t *testing.T, body []byte) {
		ctx := context.Background()
		n++
		sid := "fz-" + strconv.Itoa(n)
		check := func(resp *sessionsv1.ExchangeResponse, err error) *sessionsv1.ExchangeResponse {
			t.Helper()
			if err != nil {
				t.Fatalf("gRPC error: %v", err)
			}
			switch resp.HttpStatus {
			case 200, 204, 400, 500, 503:
			default:
				t.Fatalf("status %d", resp.HttpStatus)
			}
			if resp.HttpStatus == 200 && len(resp.Body) == 0 {
				t.Fatal("200 without a body")
			}
			return resp
		}
		next := func(b []byte) *sessionsv1.ExchangeRequest {
			return &sessionsv1.ExchangeRequest{SessionId: sid, Tenant: testTenant, DeviceKey: c.key, Body: b}
		}
		// Outside any session. An Inform there comes without the lease a
		// gateway always sends with one: a contract breach, not input.
		resp, err := w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid + "-none", Tenant: testTenant, DeviceKey: c.key, Body: body})
		if status.Code(err) != codes.InvalidArgument || !isInform(body) {
			check(resp, err)
		}

		l, err := mem.Leases().Acquire(ctx, testTenant, c.key, sid, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		check(w.Exchange(ctx, &sessionsv1.ExchangeRequest{SessionId: sid, NewSession: true, Tenant: testTenant, DeviceKey: c.key,
			Lease: &sessionsv1.DeviceLease{FencingToken: l.FencingToken}, Body: inform}))
		check(w.Exchange(ctx, next(nil)))  // GetParameterNames goes out
		check(w.Exchange(ctx, next(body))) // the fuzz input as its answer
		for range 8 {                      // then the CPE goes quiet
			if resp := check(w.Exchange(ctx, next(nil))); resp.SessionEnded {
				break
			}
		}
		if w.Sessions() != 0 {
			// Only an Inform in the fuzz input restarts the session; it
			// then needs an answer the loop above does not give.
			if !isInform(body) {
				t.Fatalf("session still held after the CPE went quiet")
			}
			w.Abandon(ctx, &sessionsv1.AbandonRequest{SessionId: sid})
		}
	})
}

func isInform(body []byte) bool {
	env, err := cwmp.Decode(body)
	return err == nil && env.Body != nil && env.Body.Method() == "Inform"
}
