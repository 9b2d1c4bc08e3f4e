package apiauth_test

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
)

// TestPublicTLSAndClientCertificates serves the public API over TLS with a
// client CA: tokens still work, certificates that name a principal
// authenticate, others are refused.
func TestPublicTLSAndClientCertificates(t *testing.T) {
	ca := newPKI(t)
	srvCert, srvKey := ca.issue(t, "server")
	ptls := apiauth.NewPublicTLS(apiauth.PublicTLSConfig{CertFile: srvCert, KeyFile: srvKey, ClientCAFile: ca.caFile()})
	// No failure limit: the test presents many bad certificates.
	e := newPublic(t, apiauth.Config{TokenCacheTTL: testAuthConfig.TokenCacheTTL}, ptls.ServerOptions()...)

	call := func(c inventoryv1.InventoryServiceClient, token, tenant string) (*inventoryv1.Device, error) {
		ctx := ctxT(t)
		if token != "" {
			ctx = bearer(ctx, token)
		}
		resp, err := c.GetDevice(ctx, &inventoryv1.GetDeviceRequest{Tenant: tenant, Id: "d"})
		return resp.GetDevice(), err
	}
	client := func(cert, key string) inventoryv1.InventoryServiceClient {
		return inventoryv1.NewInventoryServiceClient(dial(t, e.addr, "", tlsClient(t, ca, cert, key)))
	}

	// Plaintext against the TLS listener fails.
	if _, err := call(e.devs, e.admin, "alpha"); err == nil {
		t.Fatal("plaintext call to a TLS listener answered")
	}
	// TLS without a client certificate: tokens as usual.
	anon := client("", "")
	if _, err := call(anon, e.admin, "alpha"); err != nil {
		t.Fatalf("token over TLS: %v", err)
	}
	_, err := call(anon, "", "alpha")
	wantReason(t, "TLS without certificate or token", err, codes.Unauthenticated, "CREDENTIALS_MISSING")

	// A certificate naming an operator of alpha.
	opCert, opKey := ca.issue(t, "oss-alpha", "urn:fleetacs:api:operator:alpha", "https://example.com/unrelated")
	op := client(opCert, opKey)
	d, err := call(op, "", "alpha")
	if err != nil || d.GetId() != "cert:CN=oss-alpha" {
		t.Fatalf("certificate principal: %v, %v", d, err)
	}
	_, err = call(op, "", "beta")
	wantReason(t, "certificate of another tenant", err, codes.PermissionDenied, "TENANT_FORBIDDEN")
	_, err = op.DeleteDevice(ctxT(t), &inventoryv1.DeleteDeviceRequest{Tenant: "alpha", Id: "d"})
	wantReason(t, "operator certificate deleting", err, codes.PermissionDenied, "ROLE_FORBIDDEN")
	// A token, when sent too, is what counts.
	viewer := e.token(t, authv1.Role_ROLE_VIEWER, "beta")
	if d, err := call(op, viewer, "beta"); err != nil || d.GetId() == "cert:CN=oss-alpha" {
		t.Fatalf("token beside a certificate: %v, %v", d, err)
	}

	// All tenants.
	allCert, allKey := ca.issue(t, "noc", "urn:fleetacs:api:viewer:*")
	if _, err := call(client(allCert, allKey), "", "gamma"); err != nil {
		t.Fatalf("certificate for all tenants: %v", err)
	}

	// Certificates of the CA that name no principal, or a malformed one.
	for name, uris := range map[string][]string{
		"no name":     nil,
		"bad role":    {"urn:fleetacs:api:root:alpha"},
		"bad tenant":  {"urn:fleetacs:api:viewer:a/b"},
		"two roles":   {"urn:fleetacs:api:viewer:alpha", "urn:fleetacs:api:admin:beta"},
		"no tenant":   {"urn:fleetacs:api:viewer"},
		"wrong space": {"urn:other:api:admin:alpha"},
	} {
		cert, key := ca.issue(t, "bad-"+name, uris...)
		_, err := call(client(cert, key), "", "alpha")
		if code, reason := reasonOf(err); code != codes.Unauthenticated || reason != "CREDENTIALS_INVALID" {
			t.Errorf("%s: %v, want UNAUTHENTICATED CREDENTIALS_INVALID", name, err)
		}
	}
	// A certificate of another CA does not get through the handshake.
	other := newPKI(t)
	c, k := other.issue(t, "stranger", "urn:fleetacs:api:admin:*")
	if _, err := call(client(c, k), "", "alpha"); err == nil {
		t.Fatal("certificate of another CA accepted")
	}
}

func TestPublicTLSConfigValidate(t *testing.T) {
	for name, c := range map[string]apiauth.PublicTLSConfig{
		"cert without key": {CertFile: "c"},
		"key without cert": {KeyFile: "k"},
		"CA without TLS":   {ClientCAFile: "ca"},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (&apiauth.PublicTLSConfig{}).Validate(); err != nil {
		t.Errorf("no TLS: %v", err)
	}
}
