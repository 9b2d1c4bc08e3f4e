package engine

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// crInventory is memInventory with the connection-request credentials the
// inventory keeps, applied from diffs as the inventory service does.
type crInventory struct {
	*memInventory
	mu sync.Mutex
	cr map[string]CRState
}

func (m *crInventory) GetDeviceForSession(ctx context.Context, q DeviceQuery) (DeviceState, error) {
	st, err := m.memInventory.GetDeviceForSession(ctx, q)
	m.mu.Lock()
	defer m.mu.Unlock()
	st.ConnectionRequest = m.cr[q.DeviceKey]
	return st, err
}

func (m *crInventory) RecordSession(ctx context.Context, d *Diff) error {
	m.mu.Lock()
	if u := d.ConnectionRequest; u != nil {
		st := m.cr[d.DeviceKey]
		if u.Set != nil {
			c := *u.Set
			st.Current, st.RefusedTime = &c, time.Time{}
			if !u.PendingTime.IsZero() && u.PendingTime.Equal(st.PendingTime) {
				st.Pending, st.PendingTime = nil, time.Time{}
			}
		}
		if !u.RefusedTime.IsZero() {
			st.RefusedTime = u.RefusedTime
		}
		m.cr[d.DeviceKey] = st
	}
	m.mu.Unlock()
	return m.memInventory.RecordSession(ctx, d)
}

func (m *crInventory) state(key string) CRState {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.cr[key]
}

func (m *crInventory) setState(key string, st CRState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.cr[key] = st
}

// crEnv is an env whose engines share one keyring and a crInventory.
type crEnv struct {
	*env
	inv  *crInventory
	keys *secretbox.Keyring
}

func newCREnv(t *testing.T) *crEnv {
	v := newEnv(t)
	return &crEnv{env: v, inv: &crInventory{memInventory: v.inv, cr: map[string]CRState{}}, keys: testenv.Keyring(t)}
}

func (v *crEnv) engine(id string, keys *secretbox.Keyring, mutate func(*Config)) *Engine {
	v.t.Helper()
	cfg := DefaultConfig()
	cfg.WorkerID, cfg.AdvertiseAddr = id, "127.0.0.1:9300"
	if mutate != nil {
		mutate(&cfg)
	}
	e, err := New(cfg, Deps{Inventory: v.inv, Leases: v.store.Leases, Checkpoints: v.store.Checkpoints, Registry: v.store.Registry,
		Sessions: v.store.Sessions, Now: v.clock.Now, Secrets: keys})
	if err != nil {
		v.t.Fatal(err)
	}
	if err := e.crcreds.start(context.Background()); err != nil {
		v.t.Fatal(err)
	}
	return e
}

// crCPE answers a session as a CPE of data-model root root: every
// SetParameterValues with fault (when not nil) or success, kept in spv;
// other requests with empty responses.
type crCPE struct {
	*device
	root  string
	fault *cwmp.Fault
	spv   []*cwmp.SetParameterValues
}

func (v *crEnv) cpe(serial, root string) *crCPE {
	d := v.device(serial)
	v.env.inv.known[d.key] = true
	return &crCPE{device: d, root: root}
}

func (c *crCPE) open(sid string, events ...string) *Request {
	r := c.device.open(sid, events...)
	inf := &cwmp.Inform{DeviceID: c.id, MaxEnvelopes: 1, CurrentTime: "2026-03-01T12:00:00Z",
		ParameterList: []cwmp.ParameterValue{{Name: c.root + "DeviceInfo.SoftwareVersion", Value: "1.0", Type: "xsd:string"}}}
	for _, e := range events {
		inf.Events = append(inf.Events, cwmp.Event{Code: e})
	}
	r.Body = c.encode(inf, "inform")
	return r
}

func (c *crCPE) answer(body []byte) []byte {
	c.v.t.Helper()
	env, err := cwmp.Decode(body)
	if err != nil {
		c.v.t.Fatal(err)
	}
	if m, ok := env.Body.(*cwmp.SetParameterValues); ok {
		c.spv = append(c.spv, m)
		if c.fault != nil {
			return c.encode(c.fault, env.Header.ID)
		}
		return c.encode(&cwmp.SetParameterValuesResponse{}, env.Header.ID)
	}
	return c.device.answer(body)
}

// session runs one session of the CPE on e (Inform first) and returns
// what the ACS sent after the InformResponse.
func (c *crCPE) session(t *testing.T, e *Engine, sid string, events ...string) []string {
	t.Helper()
	if got := methodOf(t, exchange(t, e, c.open(sid, events...))); got != "InformResponse" {
		t.Fatalf("Inform answered with %s", got)
	}
	var sent []string
	var body []byte
	for range 100 {
		r := exchange(t, e, c.next(body))
		sent = append(sent, methodOf(t, r))
		if r.Status != 200 {
			return sent
		}
		body = c.answer(r.Body)
	}
	t.Fatal("session did not end")
	return nil
}

// crOf returns the credentials a SetParameterValues sets, checking its
// names and ParameterKey.
func crOf(t *testing.T, root string, m *cwmp.SetParameterValues) Credentials {
	t.Helper()
	if len(m.ParameterList) != 2 || m.ParameterKey != CRParameterKey {
		t.Fatalf("SetParameterValues %+v", m)
	}
	u, p := m.ParameterList[0], m.ParameterList[1]
	if u.Name != root+"ManagementServer.ConnectionRequestUsername" || p.Name != root+"ManagementServer.ConnectionRequestPassword" {
		t.Fatalf("SetParameterValues names %q, %q", u.Name, p.Name)
	}
	return Credentials{Username: u.Value, Password: p.Value}
}

// A device's first session sets generated credentials, which the diff
// carries once the CPE confirmed them; the next session sends nothing.
// Both data-model roots.
func TestCRCredsFirstContact(t *testing.T) {
	for _, root := range []string{"Device.", "InternetGatewayDevice."} {
		t.Run(strings.TrimSuffix(root, "."), func(t *testing.T) {
			v := newCREnv(t)
			e := v.engine("w1", v.keys, nil)
			c := v.cpe("CR1", root)
			// The SetParameterValues goes before the discovery a
			// bootstrap asks for.
			if sent := c.session(t, e, "s1", "0 BOOTSTRAP", "1 BOOT"); strings.Join(sent, ",") != "SetParameterValues,GetParameterNames,204" {
				t.Fatalf("sent %v", sent)
			}
			got := crOf(t, root, c.spv[0])
			if !strings.HasPrefix(got.Username, "fleetacs-") || len(got.Password) < 24 {
				t.Fatalf("generated %q / %d characters", got.Username, len(got.Password))
			}
			diffs := v.inv.recorded()
			if len(diffs) != 1 || diffs[0].ConnectionRequest == nil || diffs[0].ConnectionRequest.Set == nil || *diffs[0].ConnectionRequest.Set != got {
				t.Fatalf("diff carries %+v", diffs[0].ConnectionRequest)
			}
			var user string
			for _, p := range diffs[0].Parameters {
				if strings.HasSuffix(p.Path, "ConnectionRequestPassword") {
					t.Fatalf("password recorded as a parameter: %+v", p)
				}
				if p.Path == root+"ManagementServer.ConnectionRequestUsername" {
					user = p.Value
				}
			}
			if user != got.Username {
				t.Fatalf("user name parameter %q", user)
			}
			if sent := c.session(t, e, "s2", "2 PERIODIC"); strings.Join(sent, ",") != "204" {
				t.Fatalf("second session sent %v", sent)
			}
			if len(c.spv) != 1 {
				t.Fatalf("%d SetParameterValues", len(c.spv))
			}
			// A factory reset: the CPE lost them; the same are set again.
			c.session(t, e, "s3", "0 BOOTSTRAP", "1 BOOT")
			if len(c.spv) != 2 || crOf(t, root, c.spv[1]) != got {
				t.Fatalf("after a factory reset: %d SetParameterValues", len(c.spv))
			}
		})
	}
}

// Two generations never repeat, and they are of the promised alphabet.
func TestGenerateCredentials(t *testing.T) {
	a, err := GenerateCredentials()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := GenerateCredentials()
	if a == b || a.Password == b.Password || a.Username == b.Username {
		t.Fatalf("%+v and %+v", a, b)
	}
	if len(a.Password) != crPasswordLength || strings.Trim(a.Password, crAlphabet) != "" {
		t.Fatalf("password %q", a.Password)
	}
}

// A CPE that refuses is left alone for the retry period, then asked again;
// the refusal reaches the inventory.
func TestCRCredsRefusedBacksOff(t *testing.T) {
	v := newCREnv(t)
	e := v.engine("w1", v.keys, func(c *Config) { c.CRCredentialsRetry = time.Hour })
	c := v.cpe("CR2", "Device.")
	c.fault = &cwmp.Fault{Code: cwmp.FaultCPERequestDenied, String: "denied"}
	if sent := c.session(t, e, "s1", "1 BOOT"); strings.Join(sent, ",") != "SetParameterValues,204" {
		t.Fatalf("sent %v", sent)
	}
	d := v.inv.recorded()[0]
	if d.ConnectionRequest == nil || d.ConnectionRequest.Set != nil || !d.ConnectionRequest.RefusedTime.Equal(v.clock.Now()) {
		t.Fatalf("diff carries %+v", d.ConnectionRequest)
	}
	v.clock.Advance(59 * time.Minute)
	if sent := c.session(t, e, "s2", "2 PERIODIC"); strings.Join(sent, ",") != "204" {
		t.Fatalf("within the retry period: sent %v", sent)
	}
	v.clock.Advance(2 * time.Minute)
	c.fault = nil
	if sent := c.session(t, e, "s3", "2 PERIODIC"); strings.Join(sent, ",") != "SetParameterValues,204" {
		t.Fatalf("after the retry period: sent %v", sent)
	}
	if st := v.inv.state(c.key); st.Current == nil || !st.RefusedTime.IsZero() {
		t.Fatalf("state %+v", st)
	}
}

// An operator's credentials are set once, in place of generated ones, even
// with generation off; the inventory then forgets them as pending.
func TestCRCredsOperatorPushedOnce(t *testing.T) {
	v := newCREnv(t)
	e := v.engine("w1", v.keys, func(c *Config) { c.CRCredentials = CROff })
	c := v.cpe("CR3", "InternetGatewayDevice.")
	if sent := c.session(t, e, "s1", "1 BOOT"); strings.Join(sent, ",") != "204" {
		t.Fatalf("generation off: sent %v", sent)
	}
	op := Credentials{Username: "ops-user", Password: "ops-Password-1"}
	old := Credentials{Username: "old", Password: "old-pw"}
	pt := t0.Add(-time.Hour)
	v.inv.setState(c.key, CRState{Current: &old, Pending: &op, PendingTime: pt, RefusedTime: t0.Add(-48 * time.Hour)})
	if sent := c.session(t, e, "s2", "2 PERIODIC"); strings.Join(sent, ",") != "SetParameterValues,204" {
		t.Fatalf("sent %v", sent)
	}
	if got := crOf(t, "InternetGatewayDevice.", c.spv[0]); got != op {
		t.Fatalf("set %+v", got)
	}
	d := v.inv.recorded()[1]
	if d.ConnectionRequest == nil || !d.ConnectionRequest.PendingTime.Equal(pt) {
		t.Fatalf("diff carries %+v", d.ConnectionRequest)
	}
	if st := v.inv.state(c.key); st.Pending != nil || st.Current == nil || *st.Current != op {
		t.Fatalf("state %+v", st)
	}
	if sent := c.session(t, e, "s3", "2 PERIODIC"); strings.Join(sent, ",") != "204" {
		t.Fatalf("second session sent %v", sent)
	}
}

// A product class's template stands in for generated credentials, and
// replaces none the inventory holds.
func TestCRCredsTemplate(t *testing.T) {
	v := newCREnv(t)
	path := filepath.Join(t.TempDir(), "cr.json")
	if err := os.WriteFile(path, []byte(`[{"oui":"00d09e","productClass":"Router","username":"cls","password":"class-Pw-9"}]`), 0o600); err != nil {
		t.Fatal(err)
	}
	e := v.engine("w1", v.keys, func(c *Config) { c.CRCredentialsFile = path })
	c := v.cpe("CR4", "Device.")
	c.session(t, e, "s1", "0 BOOTSTRAP")
	if got := crOf(t, "Device.", c.spv[0]); got != (Credentials{"cls", "class-Pw-9"}) {
		t.Fatalf("set %+v", got)
	}
	other := v.cpe("CR5", "Device.")
	v.inv.setState(other.key, CRState{Current: &Credentials{"mine", "mine-pw"}})
	if sent := other.session(t, e, "s2", "2 PERIODIC"); strings.Join(sent, ",") != "204" {
		t.Fatalf("credentials held: sent %v", sent)
	}
}

func TestLoadCRTemplatesRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	for name, tc := range map[string]struct {
		body string
		mode os.FileMode
	}{
		"world-readable": {`[]`, 0o644},
		"bad oui":        {`[{"oui":"XYZ","productClass":"R","username":"u","password":"p"}]`, 0o600},
		"no password":    {`[{"oui":"00D09E","productClass":"R","username":"u"}]`, 0o600},
		"twice":          {`[{"oui":"00D09E","productClass":"R","username":"u","password":"p"},{"oui":"00d09e","productClass":"R","username":"v","password":"q"}]`, 0o600},
		"unknown field":  {`[{"oui":"00D09E","productClass":"R","username":"u","password":"p","x":1}]`, 0o600},
		"not json":       {`{`, 0o600},
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		if err := os.WriteFile(p, []byte(tc.body), tc.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, tc.mode); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadCRTemplates(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// The checkpoint holds the password sealed, in the operation and in the
// outstanding request: a worker with the keys resumes the session, sends
// the request again in full when the CPE asks, and records the
// credentials; one without them refuses the checkpoint, and nothing
// reaches the inventory.
func TestCRCredsCheckpointSealed(t *testing.T) {
	for _, shared := range []bool{true, false} {
		v := newCREnv(t)
		a := v.engine("wa", v.keys, nil)
		bKeys := v.keys
		if !shared {
			bKeys = testenv.Keyring(t)
		}
		b := v.engine("wb", bKeys, nil)
		c := v.cpe("CR6", "Device.")
		exchange(t, a, c.open("s1", "1 BOOT"))
		r := exchange(t, a, c.next(nil))
		if methodOf(t, r) != "SetParameterValues" {
			t.Fatalf("sent %s", methodOf(t, r))
		}
		set := c.answer(r.Body)
		want := crOf(t, "Device.", c.spv[0])
		cp, err := v.store.Checkpoints.Load(context.Background(), tenant, c.key, "s1")
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(cp.Data, []byte(want.Password)) || bytes.Contains(cp.Journal, []byte(want.Password)) {
			t.Fatal("checkpoint holds the password in clear")
		}
		if !bytes.Contains(cp.Data, []byte(want.Username)) {
			t.Fatal("checkpoint without the request")
		}
		if !shared {
			r := exchange(t, b, c.next(set))
			if !r.SessionEnded || r.Status == 200 {
				t.Fatalf("resumed without the keys: %d", r.Status)
			}
			if d := v.inv.recorded(); len(d) != 0 {
				t.Fatalf("recorded %+v", d[0].ConnectionRequest)
			}
			continue
		}
		// An empty POST: the request again, on the other worker.
		r = exchange(t, b, c.next(nil))
		env, err := cwmp.Decode(r.Body)
		if err != nil {
			t.Fatal(err)
		}
		spv, ok := env.Body.(*cwmp.SetParameterValues)
		if !ok || crOf(t, "Device.", spv) != want {
			t.Fatalf("sent again %+v", env.Body)
		}
		if got := methodOf(t, exchange(t, b, c.next(c.answer(r.Body)))); got != "204" {
			t.Fatalf("resumed: %s", got)
		}
		d := v.inv.recorded()[0]
		if d.ConnectionRequest == nil || d.ConnectionRequest.Set == nil || *d.ConnectionRequest.Set != want {
			t.Fatalf("resumed with the keys: %+v", d.ConnectionRequest)
		}
	}
}

// A session that expires with the SetParameterValues unanswered records
// nothing: the next session sets new credentials.
func TestCRCredsLostRecordsNothing(t *testing.T) {
	v := newCREnv(t)
	e := v.engine("w1", v.keys, nil)
	c := v.cpe("CR7", "Device.")
	exchange(t, e, c.open("s1", "1 BOOT"))
	exchange(t, e, c.next(nil))
	v.clock.Advance(cwmp.DefaultSessionTimeout + DefaultConfig().IdleGrace)
	e.Tick(context.Background())
	if d := v.inv.recorded(); len(d) != 1 || d[0].ConnectionRequest != nil {
		t.Fatalf("recorded %+v", d[0].ConnectionRequest)
	}
	if sent := c.session(t, e, "s2", "2 PERIODIC"); strings.Join(sent, ",") != "SetParameterValues,204" {
		t.Fatalf("next session sent %v", sent)
	}
}

// Keys that cannot seal cost the session nothing but the credentials: it
// runs, and a later one sets them. A key file that does not load stops the
// worker's start.
func TestCRCredsWithoutUsableKeys(t *testing.T) {
	v := newCREnv(t)
	cfg := DefaultConfig()
	cfg.WorkerID, cfg.AdvertiseAddr = "w1", "127.0.0.1:9300"
	keys := secretbox.File(filepath.Join(t.TempDir(), "missing.key"), false)
	e, err := New(cfg, Deps{Inventory: v.inv, Leases: v.store.Leases, Checkpoints: v.store.Checkpoints, Registry: v.store.Registry,
		Sessions: v.store.Sessions, Now: v.clock.Now, Secrets: keys})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(context.Background()); err == nil || !strings.Contains(err.Error(), "connection-request credentials") {
		t.Fatalf("start with a missing key file: %v", err)
	}
	c := v.cpe("CR8", "Device.")
	if sent := c.session(t, e, "s1", "1 BOOT"); strings.Join(sent, ",") != "204" {
		t.Fatalf("sent %v", sent)
	}
}

func TestCRCredsConfig(t *testing.T) {
	for _, mutate := range []func(*Config){
		func(c *Config) { c.CRCredentials = "random" },
		func(c *Config) { c.CRCredentialsRetry = 0 },
	} {
		c := DefaultConfig()
		c.AdvertiseAddr = "127.0.0.1:1"
		mutate(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sessions.cr-credentials") {
			t.Errorf("config %+v: %v", c, err)
		}
	}
}
