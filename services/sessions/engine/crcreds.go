package engine

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
)

// Connection-request credentials (docs/sessions.md, "Connection-request
// credentials"): FleetACS must know the ConnectionRequestUsername and
// ConnectionRequestPassword of every device it may wake, so a session sets
// them on the CPE when the inventory holds none (a first contact), when an
// operator gave new ones, and after a factory reset (0 BOOTSTRAP), and
// records them once the CPE confirmed the SetParameterValues.

// kindCRCreds is the operation kind in checkpoints.
const kindCRCreds = "crcreds"

// crcredsID is the queue ID of a session's credentials operation (one at
// most).
const crcredsID = "crcreds"

// crcredsPriority runs the SetParameterValues before a discovery, so that
// a session that dies in a long discovery has already set them, and the
// discovery reads the new user name.
const crcredsPriority = 1

// CRParameterKey is the ParameterKey of the SetParameterValues.
const CRParameterKey = "fleetacs-crcreds"

// CR credentials modes (Config.CRCredentials).
const (
	CRGenerate = "generate"
	CROff      = "off"
)

// Credentials are a user name and a password in clear.
type Credentials struct {
	Username string
	Password string
}

// CRState is what the inventory knows of a device's connection-request
// credentials.
type CRState struct {
	// Current are the credentials the CPE took last (as FleetACS set them,
	// or as an operator said it has them); nil when none.
	Current *Credentials
	// Pending are credentials an operator gave that no session has set on
	// the CPE yet; PendingTime is when the operator gave them, which a
	// diff echoes so that the inventory forgets exactly those.
	Pending     *Credentials
	PendingTime time.Time
	// RefusedTime is when a CPE last refused to take credentials; zero
	// when it never did, or an operator gave new ones since.
	RefusedTime time.Time
}

// CRUpdate is what a session did with the CPE's connection-request
// credentials: the body of Diff.ConnectionRequest.
type CRUpdate struct {
	// Set are credentials the CPE confirmed it took.
	Set *Credentials
	// PendingTime is the CRState.PendingTime of the operator's
	// credentials Set are; zero when Set were not those.
	PendingTime time.Time
	// RefusedTime is set when the CPE refused them.
	RefusedTime time.Time
}

// CRTemplate gives the devices of one OUI and product class fixed
// connection-request credentials instead of generated ones.
type CRTemplate struct {
	OUI          string `json:"oui"`
	ProductClass string `json:"productClass"`
	Username     string `json:"username"`
	Password     string `json:"password"`
}

// crcredsPlanner plans the credentials operation.
type crcredsPlanner struct {
	generate  bool
	retry     time.Duration
	templates []CRTemplate
	keys      *secretbox.Keyring
	logger    *slog.Logger
	file      string
}

var _ Planner = (*crcredsPlanner)(nil)

// Kind implements Planner.
func (p *crcredsPlanner) Kind() string { return kindCRCreds }

// Credential sources.
const (
	crGenerated = "generated"
	crOperator  = "operator"
	crTemplate  = "class"
	crRestore   = "restore" // the current ones, again, after a factory reset
)

// Plan implements Planner.
func (p *crcredsPlanner) Plan(ctx context.Context, s Start) ([]Planned, error) {
	cr := s.Device.ConnectionRequest
	if s.Root != "Device." && s.Root != "InternetGatewayDevice." {
		return nil, nil // nowhere to set them: a later session knows the root
	}
	if !cr.RefusedTime.IsZero() && s.Now.Before(cr.RefusedTime.Add(p.retry)) {
		return nil, nil
	}
	var want *Credentials
	var source string
	var pending time.Time
	switch {
	case cr.Pending != nil:
		want, source, pending = cr.Pending, crOperator, cr.PendingTime
	case cr.Current != nil:
		// Whoever chose them (a session, an operator), they stand: a
		// template or a generator replaces no credentials the inventory
		// holds. A factory reset took the CPE back to its own: set them
		// again.
		if !s.Bootstrap {
			return nil, nil
		}
		want, source = cr.Current, crRestore
	case p.template(s.DeviceID) != nil:
		t := p.template(s.DeviceID)
		want, source = &Credentials{t.Username, t.Password}, crTemplate
	case p.generate:
		c, err := GenerateCredentials()
		if err != nil {
			return nil, err
		}
		want, source = &c, crGenerated
	default:
		return nil, nil
	}
	op, err := sealCRCreds(p.keys, s.Tenant, s.DeviceKey, s.Root, *want)
	if err != nil {
		// Not worth failing the session: a later one sets them.
		p.logger.ErrorContext(ctx, "cannot seal connection-request credentials; none set in this session",
			keyDeviceID, s.DeviceKey, keyTenant, s.Tenant, "error", err)
		return nil, nil
	}
	op.Source, op.PendingTime = source, pending
	return []Planned{{ID: crcredsID, Priority: crcredsPriority, Created: s.Now, Op: op}}, nil
}

// template returns the product class's template, or nil.
func (p *crcredsPlanner) template(id cwmp.DeviceID) *CRTemplate {
	for i := range p.templates {
		t := &p.templates[i]
		if strings.EqualFold(t.OUI, id.OUI) && t.ProductClass == id.ProductClass {
			return t
		}
	}
	return nil
}

// Restore implements Planner. A password that no longer opens (the worker
// that sealed it had another key) leaves an operation that sends nothing:
// the next session sets credentials again.
func (p *crcredsPlanner) Restore(data []byte) (Operation, error) {
	var op crcreds
	if err := json.Unmarshal(data, &op); err != nil {
		return nil, fmt.Errorf("decode crcreds: %w", err)
	}
	if op.Root != "Device." && op.Root != "InternetGatewayDevice." {
		return nil, fmt.Errorf("decode crcreds: root %q", op.Root)
	}
	op.keys = p.keys
	return &op, nil
}

// Settle implements Planner: what the CPE did is in the session's diff;
// a refusal is worth a warning.
func (p *crcredsPlanner) Settle(ctx context.Context, e End, ops []Operation) {
	for _, o := range ops {
		op, ok := o.(*crcreds)
		if !ok {
			continue
		}
		switch op.State {
		case crRefused:
			p.logger.WarnContext(ctx, "CPE refused the connection-request credentials; retried later",
				keyDeviceID, e.DeviceKey, keyTenant, e.Tenant, "fault_code", op.FaultCode, "source", op.Source, "retry_after", p.retry.String())
		case crSet:
			p.logger.InfoContext(ctx, "connection-request credentials set on the CPE",
				keyDeviceID, e.DeviceKey, keyTenant, e.Tenant, "source", op.Source, "username", op.Username, "recorded", e.Recorded)
		}
	}
}

// crcreds states.
const (
	crToSend  = ""        // the SetParameterValues is next
	crSet     = "set"     // the CPE confirmed it
	crRefused = "refused" // the CPE answered with a fault
	crGone    = "gone"    // lost, not sent, or the password does not open: nothing to record
)

// crcreds sets a device's connection-request credentials with one
// SetParameterValues. Its checkpointed state holds the password sealed
// with the worker's keyring (bound to the tenant and device), never in
// clear: a checkpoint sits in Redis, which is not where secrets live
// (docs/security.md).
type crcreds struct {
	State    string `json:"state,omitempty"`
	Root     string `json:"root"`
	Username string `json:"username"`
	// Sealed is the password sealed under KeyID.
	Sealed []byte `json:"sealed"`
	KeyID  string `json:"keyId"`
	Source string `json:"source"`
	// PendingTime echoes CRState.PendingTime of operator credentials.
	PendingTime time.Time `json:"pendingTime,omitzero"`
	FaultCode   uint32    `json:"faultCode,omitempty"`

	keys *secretbox.Keyring
}

var _ SecretCaller = (*crcreds)(nil)

func crAAD(tenant, deviceKey string) []byte {
	return secretbox.AAD("fleetacs.sessions.crcreds", tenant, deviceKey)
}

func sealCRCreds(keys *secretbox.Keyring, tenant, deviceKey, root string, c Credentials) (*crcreds, error) {
	if keys == nil {
		return nil, errors.New("no secrets keyring")
	}
	id, sealed, err := keys.Seal([]byte(c.Password), crAAD(tenant, deviceKey))
	if err != nil {
		return nil, err
	}
	return &crcreds{Root: root, Username: c.Username, Sealed: sealed, KeyID: id, keys: keys}, nil
}

// password opens the sealed password.
func (o *crcreds) password(c *Context) (string, bool) {
	if o.keys == nil {
		return "", false
	}
	pw, err := o.keys.Open(o.KeyID, o.Sealed, crAAD(c.Tenant, c.DeviceKey))
	if err != nil {
		return "", false
	}
	return string(pw), true
}

const keySPV = "spv"

// Next implements Operation.
func (o *crcreds) Next(c *Context) (Call, bool) {
	if o.State != crToSend {
		return Call{}, false
	}
	pw, ok := o.password(c)
	if !ok {
		return Call{}, false
	}
	return Call{Key: keySPV, Message: o.spv(pw)}, true
}

// spv is the SetParameterValues of the credentials.
func (o *crcreds) spv(pw string) *cwmp.SetParameterValues {
	ms := o.Root + "ManagementServer."
	return &cwmp.SetParameterValues{
		ParameterList: []cwmp.ParameterValue{
			{Name: ms + "ConnectionRequestUsername", Value: o.Username, Type: "xsd:string"},
			{Name: ms + "ConnectionRequestPassword", Value: pw, Type: "xsd:string"},
		},
		ParameterKey: CRParameterKey,
	}
}

// Redact implements SecretCaller: the password left out.
func (o *crcreds) Redact(string, cwmp.Message) cwmp.Message { return o.spv("") }

// Rebuild implements SecretCaller.
func (o *crcreds) Rebuild(c *Context, key string) (cwmp.Message, bool) {
	pw, ok := o.password(c)
	if !ok || key != keySPV {
		return nil, false
	}
	return o.spv(pw), true
}

// Answer implements Operation.
func (o *crcreds) Answer(_ *Context, a Answer) {
	if a.Call.Key != keySPV || o.State != crToSend {
		return
	}
	switch {
	case a.Fault != nil:
		o.State, o.FaultCode = crRefused, uint32(a.Fault.Code)
	case a.Response != nil:
		if _, ok := a.Response.(*cwmp.SetParameterValuesResponse); ok {
			o.State = crSet
		} else {
			o.State = crGone
		}
	default:
		// Lost: the CPE may or may not have taken them; FleetACS does not
		// know them, so the next session sets them again. NotSent: the
		// same, with a CPE that never saw them.
		o.State = crGone
	}
}

// Observe implements Operation.
func (o *crcreds) Observe(*Context, cwmp.Message) bool { return false }

// Contribute implements Operation: credentials the CPE confirmed are
// recorded whatever the outcome, since no later session would report them
// (Outcome); so is a refusal, so that sessions back off.
func (o *crcreds) Contribute(c *Context, b *DiffBuilder, _ Outcome) {
	switch o.State {
	case crSet:
		pw, ok := o.password(c)
		if !ok {
			return
		}
		b.d.ConnectionRequest = &CRUpdate{Set: &Credentials{Username: o.Username, Password: pw}, PendingTime: o.PendingTime}
		b.Set(Parameter{Path: o.Root + "ManagementServer.ConnectionRequestUsername", Value: o.Username, Type: "xsd:string", HasValue: true})
	case crRefused:
		b.d.ConnectionRequest = &CRUpdate{RefusedTime: c.Now}
	}
}

// crAlphabet is what generated passwords are made of: letters and digits,
// which every CPE's web interface and configuration file accept.
const crAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

// Generated credential sizes: 32 characters of 62 are about 190 bits.
const (
	crPasswordLength = 32
	crUserSuffix     = 10
)

// GenerateCredentials returns fresh connection-request credentials from
// crypto/rand: user name "fleetacs-" and ten random characters, a password
// of 32.
func GenerateCredentials() (Credentials, error) {
	user, err := randomText(crUserSuffix)
	if err != nil {
		return Credentials{}, err
	}
	pw, err := randomText(crPasswordLength)
	if err != nil {
		return Credentials{}, err
	}
	return Credentials{Username: "fleetacs-" + strings.ToLower(user), Password: pw}, nil
}

// randomText draws n characters of crAlphabet uniformly (rejection
// sampling: bytes at or above the largest multiple of 62 are drawn again).
func randomText(n int) (string, error) {
	const limit = 256 - 256%len(crAlphabet)
	out := make([]byte, 0, n)
	buf := make([]byte, 2*n)
	for len(out) < n {
		if _, err := rand.Read(buf); err != nil {
			return "", fmt.Errorf("read random bytes: %w", err)
		}
		for _, b := range buf {
			if int(b) < limit && len(out) < n {
				out = append(out, crAlphabet[int(b)%len(crAlphabet)])
			}
		}
	}
	return string(out), nil
}

// newCRCredsPlanner builds the planner of cfg; with no keyring, one of a
// fresh key of this process alone (see Deps.Secrets).
func newCRCredsPlanner(cfg Config, keys *secretbox.Keyring, logger *slog.Logger) (*crcredsPlanner, error) {
	if keys == nil {
		k, err := secretbox.GenerateKey()
		if err != nil {
			return nil, fmt.Errorf("sessions: secrets key: %w", err)
		}
		if keys, err = secretbox.New(k); err != nil {
			return nil, fmt.Errorf("sessions: secrets key: %w", err)
		}
	}
	return &crcredsPlanner{generate: cfg.CRCredentials != CROff, retry: cfg.CRCredentialsRetry, keys: keys, logger: logger,
		file: cfg.CRCredentialsFile}, nil
}

// start loads the keyring and the templates file.
func (p *crcredsPlanner) start(ctx context.Context) error {
	if _, err := p.keys.Load(); err != nil {
		return fmt.Errorf("connection-request credentials: %w", err)
	}
	if p.file == "" {
		return nil
	}
	t, err := LoadCRTemplates(p.file)
	if err != nil {
		return err
	}
	p.templates = t
	p.logger.InfoContext(ctx, "connection-request credentials of product classes loaded", "file", p.file, "classes", len(t))
	return nil
}

// maxCRTemplatesFile bounds the templates file.
const maxCRTemplatesFile = 1 << 20

// LoadCRTemplates reads a file of CRTemplate, a JSON array:
//
//	[{"oui": "00D09E", "productClass": "HG8245", "username": "...", "password": "..."}]
//
// A file other users may read or write is refused: it holds passwords.
func LoadCRTemplates(path string) ([]CRTemplate, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read connection-request credentials file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read connection-request credentials file: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("connection-request credentials file %s is open to other users than its owner (mode %s): chmod 600 it", path, fi.Mode().Perm())
	}
	data, err := io.ReadAll(io.LimitReader(f, maxCRTemplatesFile+1))
	if err != nil {
		return nil, fmt.Errorf("read connection-request credentials file: %w", err)
	}
	if len(data) > maxCRTemplatesFile {
		return nil, fmt.Errorf("connection-request credentials file %s: larger than %d bytes", path, maxCRTemplatesFile)
	}
	var ts []CRTemplate
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ts); err != nil {
		return nil, fmt.Errorf("connection-request credentials file %s: %w", path, err)
	}
	seen := make(map[string]bool, len(ts))
	for i, t := range ts {
		k := strings.ToUpper(t.OUI) + "/" + t.ProductClass
		switch {
		case len(t.OUI) != 6 || strings.Trim(strings.ToUpper(t.OUI), "0123456789ABCDEF") != "":
			return nil, fmt.Errorf("connection-request credentials file %s: entry %d: oui %q is not six hexadecimal digits", path, i, t.OUI)
		case t.Username == "" || t.Password == "" || len(t.Username) > 256 || len(t.Password) > 256:
			return nil, fmt.Errorf("connection-request credentials file %s: entry %d: username and password need 1 to 256 bytes", path, i)
		case seen[k]:
			return nil, fmt.Errorf("connection-request credentials file %s: entry %d: %s twice", path, i, k)
		}
		seen[k] = true
	}
	return ts, nil
}
