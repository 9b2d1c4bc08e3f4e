package storetest

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Credential fields, as SecretsHarness names them.
const (
	FieldConnectionRequest        = "connection_request"
	FieldConnectionRequestPending = "connection_request_pending"
	FieldCPE                      = "cpe"
)

// SecretsHarness gives the secrets suite what it needs beyond the port: a
// store reopened over the same data with other keys, and the bytes the
// backend really holds.
type SecretsHarness struct {
	// Open returns a started store with keys over the same database on
	// every call of one test. The suite closes each store before the next
	// Open; Open registers a cleanup too.
	Open func(t *testing.T, keys *secretbox.Keyring) (store.Store, error)
	// Raw returns the password of a device's credentials (field is
	// FieldConnectionRequest or FieldCPE) exactly as the backend stores
	// it, read without the adapter, and the key ID stored beside it.
	Raw func(t *testing.T, tenant, id, field string) (stored []byte, keyID string)
	// WriteClear stores credentials in clear with no key ID, as a release
	// before sealing did, read without the adapter. The device exists.
	WriteClear func(t *testing.T, tenant, id, field, username, password string)
}

// RunSecrets runs the passwords-at-rest contract. newHarness returns a
// harness over a database of its own (each test uses its own keys).
func RunSecrets(t *testing.T, newHarness func(t *testing.T) SecretsHarness) {
	for _, tc := range []struct {
		name string
		fn   func(*testing.T, SecretsHarness)
	}{
		{"StoredSealed", testStoredSealed},
		{"Rotation", testRotation},
		{"ClearRowsSealedOnOpen", testClearMigrated},
		{"MissingKeyRefusesStart", testMissingKey},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, newHarness(t)) })
	}
}

func keyring(t *testing.T, keys ...secretbox.Key) *secretbox.Keyring {
	t.Helper()
	k, err := secretbox.New(keys...)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newKey(t *testing.T) secretbox.Key {
	t.Helper()
	k, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func open(t *testing.T, h SecretsHarness, keys *secretbox.Keyring) store.Store {
	t.Helper()
	s, err := h.Open(t, keys)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	return s
}

func closeStore(t *testing.T, s store.Store) {
	t.Helper()
	if err := s.Close(ctxT(t)); err != nil {
		t.Fatalf("close store: %v", err)
	}
}

// checkSealed fails unless the stored password is not the clear one (nor
// contains it) and carries the wanted key ID.
func checkSealed(t *testing.T, h SecretsHarness, tenant, id, field, password, keyID string) []byte {
	t.Helper()
	raw, gotKey := h.Raw(t, tenant, id, field)
	if len(raw) == 0 {
		t.Fatalf("%s/%s %s: nothing stored", tenant, id, field)
	}
	if bytes.Contains(raw, []byte(password)) {
		t.Fatalf("%s/%s %s: stored bytes %q contain the password %q", tenant, id, field, raw, password)
	}
	if gotKey != keyID {
		t.Fatalf("%s/%s %s: key ID %q, want %q", tenant, id, field, gotKey, keyID)
	}
	return raw
}

func testStoredSealed(t *testing.T, h SecretsHarness) {
	k := newKey(t)
	s := open(t, h, keyring(t, k))
	tenant := newTenant()
	const crPass, cpePass, opPass = "cr-Secret-1", "cpe-Secret-2", "operator-Secret-3"
	d := inform(devID("00AABB", "", "SEAL1"), base)
	d.ConnectionRequestCredentials = &store.Credentials{Username: "cr-user", Password: crPass}
	d.CPECredentials = &store.Credentials{Username: "cpe-user", Password: cpePass}
	id := apply(t, s, tenant, d, 1)
	checkSealed(t, h, tenant, id, FieldConnectionRequest, crPass, k.ID)
	first := checkSealed(t, h, tenant, id, FieldCPE, cpePass, k.ID)

	// The same password on another device is stored differently.
	d2 := inform(devID("00AABB", "", "SEAL2"), base)
	d2.CPECredentials = &store.Credentials{Username: "cpe-user", Password: cpePass}
	id2 := apply(t, s, tenant, d2, 1)
	if other := checkSealed(t, h, tenant, id2, FieldCPE, cpePass, k.ID); bytes.Equal(first, other) {
		t.Error("one password stored identically on two devices")
	}

	// An operator's credentials are sealed too.
	if err := s.SetCPECredentials(ctxT(t), tenant, id, store.Credentials{Username: "per-device", Password: opPass}); err != nil {
		t.Fatalf("SetCPECredentials: %v", err)
	}
	checkSealed(t, h, tenant, id, FieldCPE, opPass, k.ID)
	// So are an operator's connection-request credentials, pending or
	// not.
	const pendingPass, ownPass = "pending-Secret-4", "own-Secret-5"
	if err := s.SetConnectionRequestCredentials(ctxT(t), tenant, id2, store.Credentials{Username: "p", Password: pendingPass}, true); err != nil {
		t.Fatalf("SetConnectionRequestCredentials: %v", err)
	}
	checkSealed(t, h, tenant, id2, FieldConnectionRequestPending, pendingPass, k.ID)
	if err := s.SetConnectionRequestCredentials(ctxT(t), tenant, id2, store.Credentials{Username: "o", Password: ownPass}, false); err != nil {
		t.Fatalf("SetConnectionRequestCredentials: %v", err)
	}
	checkSealed(t, h, tenant, id2, FieldConnectionRequest, ownPass, k.ID)
	if err := s.SetConnectionRequestCredentials(ctxT(t), tenant, id2, store.Credentials{Username: "p", Password: pendingPass}, true); err != nil {
		t.Fatalf("SetConnectionRequestCredentials: %v", err)
	}

	// Reads return them in clear.
	got := get(t, s, tenant, id, store.ReadOptions{})
	if !reflect.DeepEqual(got.ConnectionRequestCredentials, &store.Credentials{Username: "cr-user", Password: crPass}) ||
		!reflect.DeepEqual(got.CPECredentials, &store.Credentials{Username: "per-device", Password: opPass}) {
		t.Fatalf("Get: credentials %+v, CPE credentials %+v", got.ConnectionRequestCredentials, got.CPECredentials)
	}
	st, err := s.SessionState(ctxT(t), tenant, id)
	if err != nil || !reflect.DeepEqual(st.ConnectionRequestCredentials, &store.Credentials{Username: "cr-user", Password: crPass}) {
		t.Fatalf("SessionState: %+v, %v", st.ConnectionRequestCredentials, err)
	}
	// And after a restart, from the stored bytes alone.
	closeStore(t, s)
	s = open(t, h, keyring(t, k))
	if got := get(t, s, tenant, id, store.ReadOptions{}); got.CPECredentials == nil || got.CPECredentials.Password != opPass {
		t.Fatalf("after reopening: CPE credentials %+v", got.CPECredentials)
	}
	st, err = s.SessionState(ctxT(t), tenant, id)
	if err != nil || st.ConnectionRequestCredentials == nil || st.ConnectionRequestCredentials.Password != crPass {
		t.Fatalf("SessionState after reopening: %+v, %v", st.ConnectionRequestCredentials, err)
	}
	closeStore(t, s)
}

func testRotation(t *testing.T, h SecretsHarness) {
	oldKey, newK := newKey(t), newKey(t)
	s := open(t, h, keyring(t, oldKey))
	tenant := newTenant()
	d := inform(devID("00AABB", "", "ROT1"), base)
	d.ConnectionRequestCredentials = &store.Credentials{Username: "cr", Password: "rotate-me-cr"}
	d.CPECredentials = &store.Credentials{Username: "cpe", Password: "rotate-me-cpe"}
	id := apply(t, s, tenant, d, 1)
	checkSealed(t, h, tenant, id, FieldCPE, "rotate-me-cpe", oldKey.ID)
	if err := s.SetConnectionRequestCredentials(ctxT(t), tenant, id, store.Credentials{Username: "crp", Password: "rotate-me-crp"}, true); err != nil {
		t.Fatal(err)
	}
	closeStore(t, s)

	// A new active key: opening re-seals everything with it.
	s = open(t, h, keyring(t, newK, oldKey))
	checkSealed(t, h, tenant, id, FieldConnectionRequest, "rotate-me-cr", newK.ID)
	checkSealed(t, h, tenant, id, FieldCPE, "rotate-me-cpe", newK.ID)
	checkSealed(t, h, tenant, id, FieldConnectionRequestPending, "rotate-me-crp", newK.ID)
	closeStore(t, s)

	// The old key can then go.
	s = open(t, h, keyring(t, newK))
	got := get(t, s, tenant, id, store.ReadOptions{})
	if got.ConnectionRequestCredentials.Password != "rotate-me-cr" || got.CPECredentials.Password != "rotate-me-cpe" ||
		got.PendingConnectionRequestCredentials == nil || got.PendingConnectionRequestCredentials.Password != "rotate-me-crp" {
		t.Fatalf("after rotation: %+v %+v", got.ConnectionRequestCredentials, got.CPECredentials)
	}
	closeStore(t, s)
}

func testClearMigrated(t *testing.T, h SecretsHarness) {
	k := newKey(t)
	s := open(t, h, keyring(t, k))
	tenant := newTenant()
	id := apply(t, s, tenant, inform(devID("00AABB", "", "OLD1"), base), 1)
	closeStore(t, s)
	// As an older release left it.
	h.WriteClear(t, tenant, id, FieldConnectionRequest, "cr-old", "clear-cr-pass")
	h.WriteClear(t, tenant, id, FieldCPE, "cpe-old", "clear-cpe-pass")
	if raw, key := h.Raw(t, tenant, id, FieldCPE); string(raw) != "clear-cpe-pass" || key != "" {
		t.Fatalf("harness wrote %q under key %q, want the clear password and no key", raw, key)
	}

	s = open(t, h, keyring(t, k))
	checkSealed(t, h, tenant, id, FieldConnectionRequest, "clear-cr-pass", k.ID)
	checkSealed(t, h, tenant, id, FieldCPE, "clear-cpe-pass", k.ID)
	got := get(t, s, tenant, id, store.ReadOptions{})
	if !reflect.DeepEqual(got.ConnectionRequestCredentials, &store.Credentials{Username: "cr-old", Password: "clear-cr-pass"}) ||
		!reflect.DeepEqual(got.CPECredentials, &store.Credentials{Username: "cpe-old", Password: "clear-cpe-pass"}) {
		t.Fatalf("migrated credentials: %+v %+v", got.ConnectionRequestCredentials, got.CPECredentials)
	}
	closeStore(t, s)
}

func testMissingKey(t *testing.T, h SecretsHarness) {
	k := newKey(t)
	s := open(t, h, keyring(t, k))
	tenant := newTenant()
	d := inform(devID("00AABB", "", "LOST1"), base)
	d.CPECredentials = &store.Credentials{Username: "cpe", Password: "pw"}
	apply(t, s, tenant, d, 1)
	closeStore(t, s)
	// Another install's key: the store must not start and silently hand
	// out garbage or nothing.
	s2, err := h.Open(t, keyring(t, newKey(t)))
	if err == nil {
		closeStore(t, s2)
		t.Fatal("store started without the key its passwords were sealed with")
	}
	if !errors.Is(err, secretbox.ErrUnknownKey) {
		t.Fatalf("start without the key: %v, want ErrUnknownKey", err)
	}
}

// testSetCPECredentials is part of the main contract (Run).
func testSetCPECredentials(t *testing.T, s store.Store) {
	ctx := ctxT(t)
	tenant := newTenant()
	id := apply(t, s, tenant, inform(devID("00AABB", "", "SETC1"), base), 1)
	before := get(t, s, tenant, id, store.ReadOptions{})
	if err := s.SetCPECredentials(ctx, tenant, id, store.Credentials{Username: "dev-1", Password: "p@ss word"}); err != nil {
		t.Fatalf("SetCPECredentials: %v", err)
	}
	got := get(t, s, tenant, id, store.ReadOptions{})
	if !reflect.DeepEqual(got.CPECredentials, &store.Credentials{Username: "dev-1", Password: "p@ss word"}) {
		t.Fatalf("CPE credentials %+v", got.CPECredentials)
	}
	if got.Updated.Before(before.Updated) {
		t.Errorf("Updated went back: %v -> %v", before.Updated, got.Updated)
	}
	// A session's later diff without credentials keeps them; the
	// connection-request credentials are untouched.
	applyID(t, s, tenant, id, inform(devID("00AABB", "", "SETC1"), base.Add(time.Minute)), 2)
	got = get(t, s, tenant, id, store.ReadOptions{})
	if got.CPECredentials == nil || got.CPECredentials.Username != "dev-1" || got.ConnectionRequestCredentials != nil {
		t.Fatalf("after a diff: CPE %+v, connection request %+v", got.CPECredentials, got.ConnectionRequestCredentials)
	}
	// Replaced as a whole.
	if err := s.SetCPECredentials(ctx, tenant, id, store.Credentials{Username: "dev-1b", Password: "x"}); err != nil {
		t.Fatal(err)
	}
	if got := get(t, s, tenant, id, store.ReadOptions{}); got.CPECredentials.Username != "dev-1b" || got.CPECredentials.Password != "x" {
		t.Fatalf("replaced: %+v", got.CPECredentials)
	}

	if err := s.SetCPECredentials(ctx, tenant, "NOPE-1", store.Credentials{Username: "u", Password: "p"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown device: %v, want ErrNotFound", err)
	}
	if err := s.SetCPECredentials(ctx, newTenant(), id, store.Credentials{Username: "u", Password: "p"}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("device of another tenant: %v, want ErrNotFound", err)
	}
	long := string(bytes.Repeat([]byte("x"), store.MaxCredentialLength+1))
	for name, c := range map[string]store.Credentials{
		"empty user":     {Password: "p"},
		"empty password": {Username: "u"},
		"long password":  {Username: "u", Password: long},
		"NUL":            {Username: "u\x00", Password: "p"},
	} {
		if err := s.SetCPECredentials(ctx, tenant, id, c); !errors.Is(err, store.ErrInvalidArgument) {
			t.Errorf("%s: %v, want ErrInvalidArgument", name, err)
		}
	}
	if got := get(t, s, tenant, id, store.ReadOptions{}); got.CPECredentials.Username != "dev-1b" {
		t.Errorf("refused credentials changed the stored ones: %+v", got.CPECredentials)
	}
}

// SeedOne writes one device with credentials into a new tenant and returns
// the tenant and the device id, for adapter tests that need data on disk.
func SeedOne(t *testing.T, s store.Store) (tenant, id string) {
	t.Helper()
	tenant = newTenant()
	d := inform(devID("00AABB", "", "SEED1"), base)
	d.CPECredentials = &store.Credentials{Username: "seed", Password: "seed-password"}
	return tenant, apply(t, s, tenant, d, 1)
}
