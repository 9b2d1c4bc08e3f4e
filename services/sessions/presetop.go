package sessions

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	provisioningv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/provisioning/v1"
	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// Stages of a preset operation.
const (
	presetRead  = "read"  // GetParameterValues of what the presets set
	presetAttrs = "attrs" // GetParameterAttributes of their attributes
	presetWrite = "write" // the planned requests, one at a time
	presetDone  = "done"
)

// presetRef is a preset the operation converges to.
type presetRef struct {
	Name     string `json:"name"`
	Revision uint64 `json:"revision"`
	// Body is the marshalled preset, so that a restored operation needs
	// no store.
	Body []byte `json:"body"`
}

// presetOp converges a device to the presets that matched its session.
// It is data (engine.Operation): everything it needs is in its fields.
type presetOp struct {
	Presets []presetRef         `json:"presets"`
	Fields  provisioning.Fields `json:"fields"`
	Root    string              `json:"root,omitempty"`
	// SoftwareVersion is the version the Inform reports.
	SoftwareVersion string   `json:"softwareVersion,omitempty"`
	ParameterKey    string   `json:"parameterKey,omitempty"`
	Tags            []string `json:"tags,omitempty"`
	Stage           string   `json:"stage"`
	ReadValues      []string `json:"readValues,omitempty"`
	ReadAttrs       []string `json:"readAttrs,omitempty"`
	// Known is what the reads returned (tables read are entries of their
	// own, so that an empty table is known empty).
	Known map[string]provisioning.Param `json:"known,omitempty"`
	// Queue is the plan, Pos the request to send next.
	Queue []provisioning.Request `json:"queue,omitempty"`
	Pos   int                    `json:"pos,omitempty"`
	// AddTags and RemoveTags are the presets' tag changes, written with
	// the diff once the device converged.
	AddTags    []string `json:"addTags,omitempty"`
	RemoveTags []string `json:"removeTags,omitempty"`
	// Confirmed and Removed are what the CPE confirmed, for the
	// inventory diff.
	Confirmed []engine.Parameter `json:"confirmed,omitempty"`
	Removed   []string           `json:"removed,omitempty"`
	Sent      int                `json:"sent,omitempty"`
	// Notes are what the plan could not do (a firmware version without
	// the files service, a preset yielding to another), for the log.
	Notes []string `json:"notes,omitempty"`
	Error string   `json:"error,omitempty"`
	// Refused is set when the error is the CPE's fault: the device keeps
	// refusing what the presets ask until they change, so the session
	// records the fingerprint all the same rather than have every later
	// session ask again (docs/provisioning.md, "Convergence").
	Refused bool `json:"refused,omitempty"`
	// Fingerprint is the set part of what is recorded with the device
	// when the operation converged it (provisioning.SetFingerprint), Tags
	// (after the operation's own changes) its tags part
	// (docs/provisioning.md, "Convergence").
	Fingerprint string `json:"fingerprint,omitempty"`
	// Chained is set when the operation's own tag changes make other
	// presets match, or stop matching: the fingerprint then covers the
	// tags matched with, so that the next session matches again.
	Chained bool `json:"chained,omitempty"`
	// Secrets are the per-device secrets the presets use, sealed with the
	// worker's keyring (bound to tenant, device and name): the queue
	// holds a marker where a value has one, which Next replaces, so that
	// no checkpoint holds a secret in clear.
	Secrets map[string]sealedSecret `json:"secrets,omitempty"`
	// Firmware is the firmware step the planner resolved (firmware.go);
	// nil: the presets ask for no version, or no files service is there.
	Firmware *firmwareStep `json:"firmware,omitempty"`

	keys *secretbox.Keyring
}

type sealedSecret struct {
	KeyID string `json:"keyId"`
	Data  []byte `json:"data"`
}

var _ engine.SecretCaller = (*presetOp)(nil)

func presetSecretAAD(tenant, device, name string) []byte {
	return secretbox.AAD("fleetacs.sessions.preset-secret", tenant, device, name)
}

// secretMarker stands for a secret's value in the queue: NUL cannot be in
// a CWMP value, so no real value looks like it.
func secretMarker(name string) string { return "\x00secret:" + name + "\x00" }

// sealSecrets fetches the device's secrets and keeps them sealed.
func (o *presetOp) sealSecrets(ctx context.Context, src PresetSource, keys *secretbox.Keyring, tenant, device string, names []string) error {
	if keys == nil {
		return errors.New("this worker has no secrets keyring")
	}
	vals, err := src.DeviceSecrets(ctx, tenant, device, names)
	if err != nil {
		return err
	}
	o.Secrets = make(map[string]sealedSecret, len(vals))
	for _, n := range names {
		v, ok := vals[n]
		if !ok {
			return fmt.Errorf("no secret %q returned", n)
		}
		id, sealed, err := keys.Seal([]byte(v), presetSecretAAD(tenant, device, n))
		if err != nil {
			return err
		}
		o.Secrets[n] = sealedSecret{KeyID: id, Data: sealed}
	}
	return nil
}

// secretFor is the plan's view of secrets: a marker for the ones held.
func (o *presetOp) secretFor(name string) (string, error) {
	if _, ok := o.Secrets[name]; !ok {
		return "", errNoSecrets
	}
	return secretMarker(name), nil
}

// reveal replaces the markers of v by the secrets' values; ok false when
// one cannot be opened (the keys are not this worker's).
func (o *presetOp) reveal(c *engine.Context, v string) (string, bool) {
	if !strings.Contains(v, "\x00") {
		return v, true
	}
	for name, sv := range o.Secrets {
		m := secretMarker(name)
		if !strings.Contains(v, m) {
			continue
		}
		if o.keys == nil {
			return "", false
		}
		clear, err := o.keys.Open(sv.KeyID, sv.Data, presetSecretAAD(c.Tenant, c.DeviceKey, name))
		if err != nil {
			return "", false
		}
		v = strings.ReplaceAll(v, m, string(clear))
	}
	return v, !strings.Contains(v, "\x00")
}

var _ engine.Operation = (*presetOp)(nil)

// skipEmptyReads moves past read stages with nothing to read.
func (o *presetOp) skipEmptyReads() {
	if o.Stage == presetRead && len(o.ReadValues) == 0 {
		o.Stage = presetAttrs
	}
	if o.Stage == presetAttrs && len(o.ReadAttrs) == 0 {
		o.Stage = presetWrite
	}
}

// plan computes the queue from what was read.
func (o *presetOp) plan() {
	var set []*provisioning.Preset
	for _, r := range o.Presets {
		var m provisioningv1.Preset
		if err := proto.Unmarshal(r.Body, &m); err != nil {
			o.fail("preset %s: %v", r.Name, err)
			return
		}
		c, err := provisioning.Compile(&m)
		if err != nil {
			o.fail("preset %s: %v", r.Name, err)
			return
		}
		set = append(set, c)
	}
	provisioning.Sort(set)
	d := &provisioning.Device{Fields: o.Fields, Root: o.Root, Tags: o.Tags, Params: o.Known}
	d.SoftwareVersion = o.SoftwareVersion
	opts := provisioning.Options{ParameterKey: o.ParameterKey, Secret: o.secretFor}
	if o.Firmware != nil {
		opts.Firmware = o.Firmware
	}
	pl, err := provisioning.Converge(set, d, opts)
	if err != nil {
		o.fail("%v", err)
		return
	}
	o.AddTags, o.RemoveTags, o.Notes = pl.AddTags, pl.RemoveTags, pl.Notes
	for _, r := range pl.Requests {
		switch r.Method {
		case "SetParameterValues", "AddObject", "DeleteObject", "SetParameterAttributes", "Download":
			o.Queue = append(o.Queue, r)
		}
		// Reads after the read stage: paths a CPE did not return (it
		// has no such parameter). Nothing more to learn this session.
	}
	if len(o.Queue) == 0 {
		o.Stage = presetDone
	}
}

// errNoSecrets: the session could not get a secret a preset uses; the
// preset does not converge rather than set a wrong value.
var errNoSecrets = errors.New("per-device secret unavailable")

func (o *presetOp) fail(format string, args ...any) {
	o.Error = fmt.Sprintf(format, args...)
	o.Stage = presetDone
}

// Next implements engine.Operation.
func (o *presetOp) Next(c *engine.Context) (engine.Call, bool) {
	return o.call(func(v string) (string, bool) { return o.reveal(c, v) })
}

// call builds the next call, values passed through value (secrets
// revealed, or redacted).
func (o *presetOp) call(value func(string) (string, bool)) (engine.Call, bool) {
	switch o.Stage {
	case presetRead:
		return engine.Call{Key: "gpv", Message: &cwmp.GetParameterValues{ParameterNames: o.ReadValues}}, true
	case presetAttrs:
		return engine.Call{Key: "gpa", Message: &cwmp.GetParameterAttributes{ParameterNames: o.ReadAttrs}}, true
	case presetWrite:
		if o.Pos >= len(o.Queue) {
			return engine.Call{}, false
		}
		r := o.Queue[o.Pos]
		key := "w" + strconv.Itoa(o.Pos)
		switch r.Method {
		case "SetParameterValues":
			m := &cwmp.SetParameterValues{ParameterKey: presetParameterKey}
			for i, p := range r.Paths {
				v, ok := value(r.Values[i])
				if !ok {
					return engine.Call{}, false
				}
				m.ParameterList = append(m.ParameterList, cwmp.ParameterValue{Name: p, Value: v, Type: r.Types[i]})
			}
			return engine.Call{Key: key, Message: m}, true
		case "AddObject":
			return engine.Call{Key: key, Message: &cwmp.AddObject{ObjectName: r.Paths[0], ParameterKey: provisioning.AddKey(r.Table, r.Keys)}}, true
		case "DeleteObject":
			return engine.Call{Key: key, Message: &cwmp.DeleteObject{ObjectName: r.Paths[0], ParameterKey: presetParameterKey}}, true
		case "Download":
			size, _ := strconv.ParseUint(r.Values[1], 10, 64)
			return engine.Call{Key: key, Message: &cwmp.Download{CommandKey: firmwareCommandKey(o.Firmware.Preset, o.Firmware.Revision),
				FileType: r.Values[0], URL: r.Paths[0], FileSize: uint32(min(size, math.MaxUint32))}}, true
		case "SetParameterAttributes":
			m := &cwmp.SetParameterAttributes{}
			for _, a := range r.Attributes {
				m.ParameterList = append(m.ParameterList, cwmp.SetParameterAttributesStruct{Name: a.Path,
					NotificationChange: a.Notification >= 0, Notification: max(a.Notification, 0),
					AccessListChange: a.SetAccessList, AccessList: a.AccessList})
			}
			return engine.Call{Key: key, Message: m}, true
		}
	}
	return engine.Call{}, false
}

// Answer implements engine.Operation.
func (o *presetOp) Answer(c *engine.Context, a engine.Answer) {
	switch {
	case a.Fault != nil:
		o.fail("%s: CPE fault %d %s", a.Call.Message.Method(), a.Fault.Code, a.Fault.String)
		o.Refused = true
		if f := o.Firmware; f != nil && a.Call.Message.Method() == "Download" {
			// Refused: asked again after a back-off, not every session.
			f.Wait.Until = c.Now.Add(firmwareBackoffAfter(f.Wait.Attempt))
			f.Event, f.Detail = "failed", fmt.Sprintf("the CPE refused the Download: fault %d %s; next attempt after %s",
				a.Fault.Code, a.Fault.String, f.Wait.Until.Format(time.RFC3339))
		}
		return
	case a.NotSent != nil:
		o.fail("%s not sent: %v", a.Call.Message.Method(), a.NotSent)
		return
	case a.Response == nil:
		o.fail("%s: no answer (%v)", a.Call.Message.Method(), a.Lost)
		return
	}
	o.Sent++
	switch resp := a.Response.(type) {
	case *cwmp.GetParameterValuesResponse:
		for _, pv := range resp.ParameterList {
			o.Known[pv.Name] = provisioning.Param{Value: pv.Value, Type: pv.Type, HasValue: true, Notification: -1}
		}
		for _, path := range o.ReadValues {
			if strings.HasSuffix(path, ".") {
				if _, ok := o.Known[path]; !ok {
					o.Known[path] = provisioning.Param{Notification: -1}
				}
			}
		}
		o.Stage = presetAttrs
		o.skipEmptyReads()
		if o.Stage == presetWrite {
			o.plan()
		}
	case *cwmp.GetParameterAttributesResponse:
		for _, pa := range resp.ParameterList {
			p, ok := o.Known[pa.Name]
			if !ok {
				p = provisioning.Param{Notification: -1}
			}
			p.Notification = pa.Notification
			o.Known[pa.Name] = p
		}
		o.Stage = presetWrite
		o.plan()
	case *cwmp.SetParameterValuesResponse:
		r := o.Queue[o.Pos]
		for i, p := range r.Paths {
			if strings.Contains(r.Values[i], "\x00") {
				// A secret: the inventory does not keep it in clear.
				o.Confirmed = append(o.Confirmed, engine.Parameter{Path: p})
				continue
			}
			o.Confirmed = append(o.Confirmed, engine.Parameter{Path: p, Value: r.Values[i], Type: r.Types[i], HasValue: true})
		}
		o.advance()
	case *cwmp.AddObjectResponse:
		r := o.Queue[o.Pos]
		inst := r.Paths[0] + strconv.FormatUint(uint64(resp.InstanceNumber), 10) + "."
		o.Confirmed = append(o.Confirmed, engine.Parameter{Path: inst})
		if len(r.Sets) > 0 {
			set := provisioning.Request{Method: "SetParameterValues", Reason: r.Reason}
			for _, s := range r.Sets {
				set.Paths = append(set.Paths, inst+s.Name)
				set.Values = append(set.Values, s.Value)
				set.Types = append(set.Types, s.Type)
			}
			o.Queue = append(o.Queue[:o.Pos+1], append([]provisioning.Request{set}, o.Queue[o.Pos+1:]...)...)
		}
		o.advance()
	case *cwmp.DeleteObjectResponse:
		o.Removed = append(o.Removed, o.Queue[o.Pos].Paths[0])
		o.advance()
	case *cwmp.SetParameterAttributesResponse:
		o.advance()
	case *cwmp.DownloadResponse:
		// Accepted: the transfer, its TransferComplete and the reboot
		// come in later sessions; none asks again meanwhile.
		f := o.Firmware
		f.Wait.Until = c.Now.Add(firmwareTransferWait)
		f.Event, f.Detail = "download", fmt.Sprintf("Download of %s (%d bytes) accepted (status %d), attempt %d", f.Version, f.Size, resp.Status, f.Wait.Attempt)
		o.advance()
	default:
		o.fail("unexpected %s", a.Response.Method())
	}
}

func (o *presetOp) advance() {
	o.Pos++
	if o.Pos >= len(o.Queue) {
		o.Stage = presetDone
	}
}

// Observe implements engine.Operation: it takes the TransferComplete of
// its own preset's Download, adding its fault to what is reported.
func (o *presetOp) Observe(_ *engine.Context, m cwmp.Message) bool {
	tc, ok := m.(*cwmp.TransferComplete)
	f := o.Firmware
	if !ok || f == nil || !strings.HasPrefix(tc.CommandKey, firmwareKeyPrefix) {
		return false
	}
	if tc.FaultStruct.FaultCode != 0 {
		f.Detail = fmt.Sprintf("TransferComplete fault %d %s; %s", tc.FaultStruct.FaultCode, tc.FaultStruct.FaultString, f.Detail)
	}
	return true
}

// Contribute implements engine.Operation: what the CPE confirmed it
// changed, whatever the outcome (no later session reports it again).
func (o *presetOp) Contribute(_ *engine.Context, d *engine.DiffBuilder, _ engine.Outcome) {
	if len(o.Removed) > 0 {
		d.Remove(o.Removed...)
	}
	for _, p := range o.Confirmed {
		d.Set(p)
	}
	if o.Stage == presetDone && o.Error == "" && (len(o.AddTags) > 0 || len(o.RemoveTags) > 0) {
		d.Tags(o.AddTags, o.RemoveTags)
	}
	if fp, ok := o.recordedFingerprint(); ok {
		d.PresetsFingerprint(fp)
	}
}

// recordedFingerprint is the presets fingerprint the session records
// (docs/provisioning.md, "Convergence"); ok false: none.
func (o *presetOp) recordedFingerprint() (string, bool) {
	if o.Stage != presetDone || (o.Error != "" && !o.Refused) || o.Fingerprint == "" {
		return "", false
	}
	tags := o.Tags
	if o.Error == "" && !o.Chained {
		// Contribute records the tag changes with the fingerprint.
		tags = provisioning.TagsAfter(tags, o.AddTags, o.RemoveTags)
	}
	fp := o.Fingerprint + provisioning.TagsDigest(tags)
	if o.Error != "" {
		// Recorded all the same (see Refused), marked: the device did
		// not converge, which campaigns applying a preset check.
		fp += provisioning.FingerprintRefused
	}
	if o.Firmware != nil {
		fp = withWait(fp, o.Firmware.Wait)
	}
	return fp, true
}

// Redact implements engine.SecretCaller: secrets left out.
func (o *presetOp) Redact(_ string, m cwmp.Message) cwmp.Message {
	spv, ok := m.(*cwmp.SetParameterValues)
	if !ok {
		return m
	}
	call, ok := o.call(func(v string) (string, bool) {
		for name := range o.Secrets {
			v = strings.ReplaceAll(v, secretMarker(name), "")
		}
		return v, true
	})
	if red, isSPV := call.Message.(*cwmp.SetParameterValues); ok && isSPV && len(red.ParameterList) == len(spv.ParameterList) {
		return red
	}
	out := *spv
	out.ParameterList = nil
	return &out
}

// Rebuild implements engine.SecretCaller.
func (o *presetOp) Rebuild(c *engine.Context, key string) (cwmp.Message, bool) {
	call, ok := o.Next(c)
	if !ok || call.Key != key {
		return nil, false
	}
	return call.Message, true
}
