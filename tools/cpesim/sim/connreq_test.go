package sim

import (
	"context"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// TestConnectionRequestFollowsSetCredentials: once an ACS set new
// ConnectionRequestUsername and Password (TR-181 and TR-098 roots), the
// listener accepts those and refuses the ones the device started with.
func TestConnectionRequestFollowsSetCredentials(t *testing.T) {
	for _, model := range []DataModel{TR181, TR098} {
		t.Run(string(model), func(t *testing.T) {
			acs := newTestACS(t, ConnCookie)
			reports := make(chan SessionReport, 8)
			cfg := testConfig(t, acs)
			cfg.Devices = 1
			cfg.ConnReq = ConnReqPerDevice
			cfg.OnSession = func(r SessionReport) { reports <- r }
			cfg.Model = model
			s, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan struct{})
			go func() {
				defer close(done)
				if _, err := s.Run(ctx); err != nil {
					t.Errorf("Run: %v", err)
				}
			}()
			defer func() { cancel(); <-done }()
			if r := waitFor(t, reports); !r.OK {
				t.Fatalf("boot session failed: %v", r.Err)
			}
			dev := s.Devices()[0]
			root := dev.tree.root.name
			oldUser, oldPass := dev.ConnectionRequestCredentials()
			if oldUser == "" || oldPass == "" {
				t.Fatalf("default credentials %q/%q", oldUser, oldPass)
			}
			dev.mu.Lock()
			resp := dev.setParameterValues(&cwmp.SetParameterValues{ParameterKey: "k", ParameterList: []cwmp.ParameterValue{
				{Name: root + "ManagementServer.ConnectionRequestUsername", Value: "acs-set", Type: "xsd:string"},
				{Name: root + "ManagementServer.ConnectionRequestPassword", Value: "acs-Set-Password-0123456789", Type: "xsd:string"},
			}})
			dev.mu.Unlock()
			if _, ok := resp.(*cwmp.SetParameterValuesResponse); !ok {
				t.Fatalf("SetParameterValues: %+v", resp)
			}
			url := dev.ConnectionRequestURL()
			if code := connectionRequest(t, url, oldUser, oldPass); code != 401 {
				t.Errorf("the device's first credentials: HTTP %d", code)
			}
			if code := connectionRequest(t, url, "acs-set", "acs-Set-Password-0123456789"); code != 200 {
				t.Fatalf("the credentials set: HTTP %d", code)
			}
			if r := waitFor(t, reports); !r.OK || len(r.Events) != 1 || r.Events[0].Code != "6 CONNECTION REQUEST" {
				t.Errorf("CR session: ok %v events %+v", r.OK, r.Events)
			}
		})
	}
}
