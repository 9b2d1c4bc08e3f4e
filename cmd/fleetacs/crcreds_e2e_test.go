package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// TestConnectionRequestCredentialsE2E runs `fleetacs all` with a simulated
// CPE that has a connection-request listener: its first session sets
// generated credentials on it, the inventory shows the user name (and that
// a password is set) publicly and hands both to the notifier's internal
// call, and a Digest GET with them wakes the CPE while the CPE's own
// credentials are refused.
func TestConnectionRequestCredentialsE2E(t *testing.T) {
	dataDir := t.TempDir()
	token := "crcreds-e2e-internal-token-0123456789abcdef"
	tokenFile := filepath.Join(t.TempDir(), "internal.token")
	if err := secretbox.WriteFileExclusive(tokenFile, []byte(token+"\n")); err != nil {
		t.Fatal(err)
	}
	internal := testenv.FreePort(t)
	a := startAllInOne(t, dataDir, "-internal.token-file="+tokenFile, fmt.Sprintf("-server.internal-grpc-addr=127.0.0.1:%d", internal))
	defer a.stopClean(t)

	reports := make(chan sim.SessionReport, 16)
	s, err := sim.New(sim.Config{
		URL: a.url(), Model: sim.TR181, Devices: 1, Seed: 5, SerialPrefix: "CRE2E", OUI: "A1B2C3", ProductClass: "CR-SIM",
		Manufacturer: "Sim", BootStorm: true, Concurrency: 1, Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice,
		OnSession: func(r sim.SessionReport) { reports <- r },
	})
	if err != nil {
		t.Fatal(err)
	}
	dev := s.Devices()[0]
	ownUser, ownPass := dev.ConnectionRequestCredentials()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := s.Run(ctx); done <- err }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("cpesim: %v", err)
		}
	}()
	waitReport := func() sim.SessionReport {
		t.Helper()
		select {
		case r := <-reports:
			return r
		case <-ctx.Done():
			t.Fatal("no session report")
		}
		return sim.SessionReport{}
	}
	if r := waitReport(); !r.OK {
		t.Fatalf("first session: %v", r.Err)
	}

	// The public view: the user name, and that a password is set.
	inv, authCtx := a.inventory(t)
	var d *inventoryv1.Device
	testenv.WaitFor(t, 10*time.Second, func() error {
		list, err := inv.ListDevices(authCtx, &inventoryv1.ListDevicesRequest{Tenant: "default", PageSize: 10})
		if err != nil || len(list.GetDevices()) != 1 {
			return fmt.Errorf("devices %v, %v", list.GetDevices(), err)
		}
		d = list.GetDevices()[0]
		if cr := d.GetConnectionRequest(); !strings.HasPrefix(cr.GetUsername(), "fleetacs-") || !cr.GetPasswordSet() {
			return fmt.Errorf("connection request %+v", cr)
		}
		return nil
	})

	// The notifier's view, over the internal listener with the internal
	// credential.
	cc := dialPlain(t, fmt.Sprintf("127.0.0.1:%d", internal))
	ictx := metadata.AppendToOutgoingContext(ctx10(t), apiauth.InternalTokenHeader, token)
	target, err := inventoryv1.NewInventoryInternalServiceClient(cc).GetConnectionRequestTarget(ictx,
		&inventoryv1.GetConnectionRequestTargetRequest{Tenant: "default", DeviceKey: d.GetId()})
	if err != nil {
		t.Fatal(err)
	}
	creds := target.GetCredentials()
	if creds.GetUsername() != d.GetConnectionRequest().GetUsername() || len(creds.GetPassword()) < 24 {
		t.Fatalf("notifier's credentials: user %q, %d-character password", creds.GetUsername(), len(creds.GetPassword()))
	}
	if u, p := dev.ConnectionRequestCredentials(); u != creds.GetUsername() || p != creds.GetPassword() {
		t.Fatal("the CPE holds other credentials than the inventory")
	}
	crURL := target.GetConnectionRequest().GetUrl()
	if crURL == "" || crURL != dev.ConnectionRequestURL() {
		t.Fatalf("connection request URL %q, the CPE listens at %q", crURL, dev.ConnectionRequestURL())
	}

	if code := digestGET(t, crURL, ownUser, ownPass); code != http.StatusUnauthorized {
		t.Fatalf("the CPE's own credentials: HTTP %d", code)
	}
	if code := digestGET(t, crURL, creds.GetUsername(), creds.GetPassword()); code != http.StatusOK {
		t.Fatalf("the credentials FleetACS set: HTTP %d", code)
	}
	r := waitReport()
	if !r.OK || len(r.Events) == 0 || r.Events[0].Code != "6 CONNECTION REQUEST" {
		t.Fatalf("woken session: ok %v, events %+v, %v", r.OK, r.Events, r.Err)
	}
	// The woken session did not set them again.
	if u, p := dev.ConnectionRequestCredentials(); u != creds.GetUsername() || p != creds.GetPassword() {
		t.Fatal("credentials changed by a later session")
	}

	// An operator gives others: the notifier keeps the CPE's until the next
	// session (woken with them) set the operator's.
	ops := &inventoryv1.SetConnectionRequestCredentialsRequest{Tenant: "default", Id: d.GetId(), Username: "ops-user", Password: "ops-Password-0123456789"}
	if _, err := inv.SetConnectionRequestCredentials(authCtx, ops); err != nil {
		t.Fatal(err)
	}
	if code := digestGET(t, crURL, creds.GetUsername(), creds.GetPassword()); code != http.StatusOK {
		t.Fatalf("waking to set the operator's: HTTP %d", code)
	}
	if r := waitReport(); !r.OK {
		t.Fatalf("session setting the operator's: %v", r.Err)
	}
	testenv.WaitFor(t, 10*time.Second, func() error {
		tg, err := inventoryv1.NewInventoryInternalServiceClient(cc).GetConnectionRequestTarget(ictx,
			&inventoryv1.GetConnectionRequestTargetRequest{Tenant: "default", DeviceKey: d.GetId()})
		if err != nil {
			return err
		}
		if c := tg.GetCredentials(); c.GetUsername() != ops.Username || c.GetPassword() != ops.Password {
			return fmt.Errorf("notifier's user %q", c.GetUsername())
		}
		return nil
	})
	if code := digestGET(t, crURL, creds.GetUsername(), creds.GetPassword()); code != http.StatusUnauthorized {
		t.Fatalf("the generated ones after the operator's were set: HTTP %d", code)
	}
	if code := digestGET(t, crURL, ops.Username, ops.Password); code != http.StatusOK {
		t.Fatalf("the operator's: HTTP %d", code)
	}
	if r := waitReport(); !r.OK {
		t.Fatalf("session woken with the operator's: %v", r.Err)
	}
}

// digestGET sends a connection request: a GET, and the same GET with
// Digest (qop auth, MD5) answering the challenge. It returns the last
// status.
func digestGET(t *testing.T, rawURL, user, pass string) int {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		return resp.StatusCode
	}
	params := map[string]string{}
	for _, kv := range strings.Split(strings.TrimPrefix(resp.Header.Get("WWW-Authenticate"), "Digest "), ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(kv), "=")
		params[k] = strings.Trim(v, `"`)
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		t.Fatal(err)
	}
	h := func(s string) string { b := md5.Sum([]byte(s)); return hex.EncodeToString(b[:]) }
	const nc, cnonce = "00000001", "0a4f113b"
	uri := u.RequestURI()
	response := h(h(user+":"+params["realm"]+":"+pass) + ":" + params["nonce"] + ":" + nc + ":" + cnonce + ":auth:" + h("GET:"+uri))
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", fmt.Sprintf(`Digest username="%s", realm="%s", nonce="%s", uri="%s", qop=auth, nc=%s, cnonce="%s", response="%s"`,
		user, params["realm"], params["nonce"], uri, nc, cnonce, response))
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
