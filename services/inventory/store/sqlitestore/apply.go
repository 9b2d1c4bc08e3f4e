package sqlitestore

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"strings"
	"sync/atomic"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/provisioning"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// writeStmts are the writer's statements, prepared once on its connection:
// parsing them again for every diff cost as much as running them.
type writeStmts struct {
	begin, commit, rollback          rawStmt
	savepoint, release, rollbackTo   rawStmt
	readDevice, insertDevice         rawStmt
	touchDevice, deleteDevice        rawStmt
	setParamValue                    rawStmt
	deleteParams, deleteParamsPrefix rawStmt
	deleteParam                      rawStmt
	readTree, writeTree, deleteTree  rawStmt
	addTag, removeTag, deleteTags    rawStmt
	setCPECredentials                rawStmt
	setCRCredentials, setCRPending   rawStmt
}

func (st *writeStmts) prepare(rc *rawConn) error {
	for _, s := range []struct {
		dst *rawStmt
		sql string
	}{
		// BEGIN IMMEDIATE takes the write lock up front, so a transaction
		// never fails halfway on a lock another process holds.
		{&st.begin, `BEGIN IMMEDIATE`},
		{&st.commit, `COMMIT`},
		{&st.rollback, `ROLLBACK`},
		{&st.savepoint, `SAVEPOINT op`},
		{&st.release, `RELEASE op`},
		{&st.rollbackTo, `ROLLBACK TO op`},
		{&st.readDevice, readDeviceSQL},
		{&st.insertDevice, `INSERT INTO devices (tenant, id, registered, updated, fencing_token) VALUES (?, ?, ?, ?, ?)`},
		{&st.touchDevice, `UPDATE devices SET updated = ?, presets = '' WHERE tenant = ? AND id = ?`},
		{&st.deleteDevice, `DELETE FROM devices WHERE tenant = ? AND id = ?`},
		{&st.setParamValue, setParamValueSQL},
		{&st.deleteParams, `DELETE FROM parameters WHERE tenant = ? AND device_id = ?`},
		{&st.deleteParamsPrefix, `DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path >= ? AND path < ?`},
		{&st.deleteParam, `DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path = ?`},
		{&st.readTree, `SELECT tree FROM device_trees WHERE tenant = ? AND device_id = ?`},
		{&st.writeTree, `INSERT INTO device_trees (tenant, device_id, tree) VALUES (?, ?, ?)
			ON CONFLICT (tenant, device_id) DO UPDATE SET tree = excluded.tree`},
		{&st.deleteTree, `DELETE FROM device_trees WHERE tenant = ? AND device_id = ?`},
		{&st.addTag, `INSERT OR IGNORE INTO device_tags (tenant, device_id, tag) VALUES (?, ?, ?)`},
		{&st.removeTag, `DELETE FROM device_tags WHERE tenant = ? AND device_id = ? AND tag = ?`},
		{&st.deleteTags, `DELETE FROM device_tags WHERE tenant = ? AND device_id = ?`},
		{&st.setCPECredentials, `UPDATE devices SET cpe_username = ?, cpe_password = ?, cpe_password_key = ?, updated = ?
			WHERE tenant = ? AND id = ?`},
		{&st.setCRCredentials, `UPDATE devices SET cr_username = ?, cr_password = ?, cr_password_key = ?,
			crp_username = NULL, crp_password = NULL, crp_password_key = NULL, crp_time = NULL, cr_refused = NULL, updated = ?
			WHERE tenant = ? AND id = ?`},
		// crp_time grows with every set, so that a session echoing an
		// older one forgets nothing newer.
		{&st.setCRPending, `UPDATE devices SET crp_username = ?, crp_password = ?, crp_password_key = ?,
			crp_time = max(?, coalesce(crp_time, 0) + 1), cr_refused = NULL, updated = ?
			WHERE tenant = ? AND id = ?`},
	} {
		if err := rc.keep(s.dst, s.sql); err != nil {
			return err
		}
	}
	return nil
}

// readDeviceSQL reads what applying a diff needs of the stored device: the
// fencing token, the session that last took it over, the indexed columns
// a diff may set (see deviceUpdate.setIndexed) and the tree delta with the
// tree's length (treedelta.go).
const readDeviceSQL = `SELECT fencing_token, takeover_session, oui, product_class, serial_number,
	software_version, hardware_version, confirmed_paths, confirmed_at,
	data_model_root, full_discovery, cr_username, cr_password, cr_password_key,
	crp_username, crp_password, crp_password_key, crp_time, cr_refused, presets, ` + tagsColumn + `,
	tree_delta, tree_bytes
	FROM devices d WHERE d.tenant = ? AND d.id = ?`

// Confirmed entries.
//
// A session reports most values again unchanged: every periodic Inform
// carries the same DeviceInfo and ManagementServer parameters. Rewriting
// their entries only to move their Updated time cost more than the rest of
// the diff (the entries lie on several pages of the parameters table, each
// a WAL frame at commit). So the entries a diff reports by value alone (no
// attributes), up to maxConfirmed of them, are its confirmed entries: the
// device row keeps their paths (confirmed_paths, sorted, one per line) and
// the diff's time (confirmed_at). A diff that confirms the very values the
// device's last diff confirmed, and reports nothing else, writes the device
// row alone: not its tree, not its index rows. The Updated time of an
// entry is then
//
//	max(tree entry's Updated, devices.confirmed_at) for a path in confirmed_paths
//	tree entry's Updated                              otherwise
//
// which readers apply (read.go). A diff that writes the tree moves the
// Updated time of the entries the device had confirmed to confirmed_at
// first (mergeEncoded), so that their time never goes back when the
// confirmed paths change.
//
// A diff older than the last confirmation (a replay) confirms nothing: it
// writes its entries as any other diff does.

// maxConfirmed bounds the confirmed entries of a device: a diff reporting
// more values (a discovery, a large refresh) writes them all.
const maxConfirmed = 64

// Parameter updates are written in two steps, because a periodic Inform
// mostly reports values that did not change, and an UPDATE that names a
// column makes SQLite rewrite that column's index entries even when the value
// stays the same: each changed value costs a delete and an insert in the
// value index and in the number or instant index, anywhere in those trees.
//
// mergeParamsSQL(n) inserts n entries in one statement. An entry that exists
// and already holds the reported value and type (or the update carries no
// value) only has its attributes and Updated time written, which touches no
// index. An entry whose value changed is left alone by the conflict clause
// and is missing from what RETURNING reports; setParamValueSQL then writes
// it whole. A known value is never NULL (an empty value is the empty
// string), so NULL in value, writable or notification means "unknown, keep
// what is stored", and COALESCE is exact.
//
// Each row takes the tenant, the device id and the entry's eight columns.
// The parameters are anonymous: the driver looks up the name of every
// numbered parameter it binds, with a linear search.
func mergeParamsSQL(n int) string {
	var b strings.Builder
	b.WriteString(`INSERT INTO parameters (tenant, device_id, path, value, type, number, instant, writable, notification, updated) VALUES `)
	for i := range n {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
	}
	b.WriteString(` ON CONFLICT (tenant, device_id, path) DO UPDATE SET
	writable     = COALESCE(excluded.writable, parameters.writable),
	notification = COALESCE(excluded.notification, parameters.notification),
	updated      = excluded.updated
WHERE excluded.value IS NULL OR (parameters.value = excluded.value AND parameters.type = excluded.type)
RETURNING path`)
	return b.String()
}

// maxMergeRows bounds the rows of one merge statement, and so the number of
// statements the cache holds; larger diffs are merged in chunks.
const maxMergeRows = 32

// setParamValueSQL writes a changed value into an existing entry.
const setParamValueSQL = `UPDATE parameters SET
	value        = ?,
	type         = ?,
	number       = ?,
	instant      = ?,
	writable     = COALESCE(?, writable),
	notification = COALESCE(?, notification),
	updated      = ?
WHERE tenant = ? AND device_id = ? AND path = ?`

// Device columns a diff may set besides fencing_token and updated, one bit
// each in deviceUpdate.mask, in the order the UPDATE lists them.
const (
	colManufacturer = iota
	colOUIRaw
	colOUI
	colProductClass
	colSerialNumber
	colLastInform
	colRemoteIP
	colLastEvents
	colLastBoot
	colLastBootstrap
	colDataModelRoot
	colSoftwareVersion
	colHardwareVersion
	colProvisioningCode
	colCRURL
	colCRUDPAddress
	colCRJabberID
	colCRUsername
	colCRPassword
	colCRPasswordKey
	colCPEUsername
	colCPEPassword
	colCPEPasswordKey
	colFullDiscovery
	colTakeover
	colTakeoverSession
	colConfirmedPaths
	colConfirmedAt
	colCRPUsername
	colCRPPassword
	colCRPPasswordKey
	colCRPTime
	colCRRefused
	colPresets
	colTreeDelta
	colTreeBytes
	numDeviceCols
)

var deviceSets = [numDeviceCols]string{
	colManufacturer: "manufacturer = ?", colOUIRaw: "oui_raw = ?", colOUI: "oui = ?",
	colProductClass: "product_class = ?", colSerialNumber: "serial_number = ?",
	colLastInform: "last_inform = ?", colRemoteIP: "remote_ip = ?", colLastEvents: "last_events = ?",
	colLastBoot: "last_boot = ?", colLastBootstrap: "last_bootstrap = ?",
	colDataModelRoot: "data_model_root = ?", colSoftwareVersion: "software_version = ?",
	colHardwareVersion: "hardware_version = ?", colProvisioningCode: "provisioning_code = ?",
	colCRURL: "cr_url = ?", colCRUDPAddress: "cr_udp_address = ?", colCRJabberID: "cr_jabber_id = ?",
	colCRUsername: "cr_username = ?", colCRPassword: "cr_password = ?", colCRPasswordKey: "cr_password_key = ?",
	colCPEUsername: "cpe_username = ?", colCPEPassword: "cpe_password = ?", colCPEPasswordKey: "cpe_password_key = ?",
	colFullDiscovery:   "full_discovery = ?",
	colTakeover:        "takeover_count = takeover_count + 1, last_takeover = ?",
	colTakeoverSession: "takeover_session = ?",
	colConfirmedPaths:  "confirmed_paths = ?",
	colConfirmedAt:     "confirmed_at = ?",
	colCRPUsername:     "crp_username = ?", colCRPPassword: "crp_password = ?", colCRPPasswordKey: "crp_password_key = ?",
	colCRPTime: "crp_time = ?", colCRRefused: "cr_refused = ?", colPresets: "presets = ?",
	colTreeDelta: "tree_delta = ?", colTreeBytes: "tree_bytes = ?",
}

// deviceUpdate is the UPDATE of one device row: the columns to set and
// their values.
type deviceUpdate struct {
	mask uint64
	vals [numDeviceCols]any
}

func (u *deviceUpdate) set(col int, v any) {
	u.mask |= 1 << col
	u.vals[col] = v
}

// setIndexed sets an indexed column only when its value changes: SQLite
// rewrites the index entry of every column an UPDATE names, changed or not.
func (u *deviceUpdate) setIndexed(col int, stored, v string) {
	if stored != v {
		u.set(col, v)
	}
}

func updateSQL(mask uint64) string {
	var b strings.Builder
	b.WriteString("UPDATE devices SET fencing_token = ?, updated = ?")
	for col := range numDeviceCols {
		if mask&(1<<col) != 0 {
			b.WriteString(", ")
			b.WriteString(deviceSets[col])
		}
	}
	b.WriteString(" WHERE tenant = ? AND id = ?")
	return b.String()
}

// diffOp is a planned diff on its way to the writer, with what can be
// computed before it gets there.
type diffOp struct {
	tenant, id string
	plan       storekit.Plan
	// events is the Inform's events as last_events holds them.
	events string
	// crPass and cpePass are the plan's sealed passwords in base64, as
	// the password columns hold them.
	crPass, cpePass string
	// confirmedPaths are the paths the diff confirms (see "Confirmed
	// entries"), set by the writer.
	confirmedPaths string
	// tree are the device row's tree columns writeTree sets.
	tree treeCols
}

// treeCols are the tree columns of the device row a diff sets
// (treedelta.go): the delta when setDelta (nil: none), the tree's length
// when setBytes.
type treeCols struct {
	delta              []byte
	setDelta, setBytes bool
	bytes              int64
}

// storedDevice is what applying a diff needs to know of the stored row.
type storedDevice struct {
	token                            int64
	takeoverSession                  string
	oui, productClass, serialNumber  string
	softwareVersion, hardwareVersion string
	// confirmedPaths and confirmedAt (unix ms, 0 when NULL): see
	// "Confirmed entries".
	confirmedPaths string
	confirmedAt    int64
	// The rest of the session state (session.go); fullDiscovery in unix
	// ms, 0 when NULL.
	root          string
	fullDiscovery int64
	crUser        *string
	// crPass is the connection-request password as stored: sealed and in
	// base64 under crKey, or in clear when crKey is "" (see sealedText).
	crPass, crKey string
	// crp* are the pending ones, as stored, crpTime when given (unix ms),
	// crRefused when a CPE refused (unix ms, 0 when NULL).
	crpUser            *string
	crpPass, crpKey    string
	crpTime, crRefused int64
	presets            string
	// tags, sorted: a session state carries them, since which presets
	// match depends on them (docs/provisioning.md, "Convergence").
	// Shared: never changed in place.
	tags []string
	// delta is the tree delta (nil: none) and treeBytes the stored
	// tree's length, -1 when unknown (treedelta.go). delta is the row's
	// own: never changed in place.
	delta     []byte
	treeBytes int64
}

// verifyRowCache makes readDevice read the database also when the session
// cache holds the row, and fail when the two differ: tests run the store
// with it to show that the cache is exact.
var verifyRowCache atomic.Bool

// readDevice returns the stored row of the device. The session cache
// holds it as the device's last committed diff left it (session.go), and
// is exact unless this transaction has written the device already
// (touched): then, or when the cache does not hold the device, the row is
// read from the database.
func (w *writer) readDevice(tenant, id string, touched bool) (storedDevice, bool, error) {
	if touched {
		return w.readDeviceRow(tenant, id)
	}
	st, ok := w.sessions.get(tenant, id)
	if !ok {
		return w.readDeviceRow(tenant, id)
	}
	if verifyRowCache.Load() {
		stored, found, err := w.readDeviceRow(tenant, id)
		if err != nil {
			return storedDevice{}, false, err
		}
		if !found {
			return storedDevice{}, false, fmt.Errorf("session cache holds device %s/%s, which has no row", tenant, id)
		}
		if !reflect.DeepEqual(st.storedDevice, stored) {
			// Names only: the values include sealed passwords.
			return storedDevice{}, false, fmt.Errorf("session cache of device %s/%s differs from its row in %v",
				tenant, id, differingFields(st.storedDevice, stored))
		}
	}
	return st.storedDevice, true, nil
}

// differingFields names the fields in which a and b differ (their
// printed values, pointers followed), for verifyRowCache's message.
func differingFields(a, b storedDevice) []string {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	show := func(v reflect.Value) string {
		if v.Kind() == reflect.Pointer && !v.IsNil() {
			v = v.Elem()
		}
		return fmt.Sprintf("%#v", v)
	}
	var out []string
	for i := range va.NumField() {
		if show(va.Field(i)) != show(vb.Field(i)) {
			out = append(out, va.Type().Field(i).Name)
		}
	}
	return out
}

// readDeviceRow reads the device's row from the database.
func (w *writer) readDeviceRow(tenant, id string) (cur storedDevice, found bool, err error) {
	row := slices.Grow(w.row[:0], 23)[:23]
	w.row = row
	defer clear(row)
	if found, err = w.rc.queryRow(w.stmts.readDevice, row, tenant, id); !found || err != nil {
		return storedDevice{}, false, err
	}
	cur.token, err = integer(row[0])
	for i, dst := range []*string{&cur.takeoverSession, &cur.oui, &cur.productClass, &cur.serialNumber,
		&cur.softwareVersion, &cur.hardwareVersion, &cur.confirmedPaths} {
		var e error
		*dst, e = text(row[1+i])
		err = errors.Join(err, e)
	}
	var e1, e2, e3, e4, e5, e6 error
	cur.confirmedAt, e1 = integer(row[8])
	cur.root, e2 = text(row[9])
	cur.fullDiscovery, e3 = integer(row[10])
	if row[11] != nil {
		var user string
		user, e4 = text(row[11])
		cur.crUser = &user
		cur.crPass, e5 = text(row[12])
		cur.crKey, e6 = text(row[13])
	}
	var e7, e8, e9, e10, e11 error
	if row[14] != nil {
		var user string
		user, e7 = text(row[14])
		cur.crpUser = &user
		cur.crpPass, e8 = text(row[15])
		cur.crpKey, e9 = text(row[16])
	}
	cur.crpTime, e10 = integer(row[17])
	cur.crRefused, e11 = integer(row[18])
	var e12, e13 error
	cur.presets, e12 = text(row[19])
	var tags string
	tags, e13 = text(row[20])
	cur.tags = splitTags(tags)
	var e14, e15 error
	// A copy: the session cache may keep it.
	cur.delta, e14 = blob(row[21])
	cur.delta = bytes.Clone(cur.delta)
	cur.treeBytes = -1
	if row[22] != nil {
		cur.treeBytes, e15 = integer(row[22])
	}
	return cur, true, errors.Join(err, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15)
}

// applyDiff applies a planned diff inside the writer's transaction.
func (w *writer) applyDiff(d *diffOp) (created bool, err error) {
	st, rc, p := &w.stmts, &w.rc, &d.plan
	tenant, id := d.tenant, d.id
	key := sessionKey{tenant, id}
	_, touched := w.touched[key]
	cur, found, err := w.readDevice(tenant, id, touched)
	switch {
	case err != nil:
		return false, fmt.Errorf("read fencing token: %w", err)
	case !found:
		if p.DeviceID == nil {
			return false, refuse(store.ErrNotFound)
		}
		if _, err := rc.exec(st.insertDevice, tenant, id, p.Time.UnixMilli(), p.Time.UnixMilli(), p.Token); err != nil {
			return false, fmt.Errorf("insert device: %w", err)
		}
		created = true
		cur.treeBytes = -1
	case p.Token < cur.token:
		return false, refuse(store.ErrStaleFencingToken)
	}
	// Written from here on (a refusal above wrote nothing).
	w.touched[key] = struct{}{}

	confirm, rest := w.splitConfirmed(p, &cur)
	d.confirmedPaths = w.internPaths(joinPaths(&w.pathBuf, confirm))
	var digest [sha256.Size]byte
	if len(confirm) > 0 {
		digest = confirmDigest(&w.digestBuf, confirm)
	}
	// The tree and the index rows already hold what the diff reports when
	// it only confirms the values the device's last committed diff
	// confirmed, and nothing has written the device since (in this
	// transaction either).
	writeTree := len(p.Updates) > 0 || p.DeleteAll || len(p.Deletes) > 0 || len(p.DeleteEntries) > 0
	if writeTree && len(rest) == 0 && !touched && !p.DeleteAll && len(p.Deletes) == 0 && len(p.DeleteEntries) == 0 &&
		d.confirmedPaths == cur.confirmedPaths {
		if last, ok := w.sessions.get(tenant, id); ok && last.hasConfirmed && last.confirmed == digest {
			writeTree = false
		}
	}
	d.tree = treeCols{}
	if writeTree {
		// Before updateDevice, which writes the tree columns it sets.
		if err := w.writeTree(d, &cur); err != nil {
			return false, err
		}
	}
	u, err := w.updateDevice(d, &cur)
	if err != nil {
		return false, err
	}
	if writeTree {
		if err := w.writeIndex(d); err != nil {
			return false, err
		}
	}
	if err := w.changeTags(tenant, id, p.AddTags, p.RemoveTags); err != nil {
		return false, err
	}
	tags := cur.tags
	if len(p.AddTags) > 0 || len(p.RemoveTags) > 0 {
		// nil when none, as splitTags reads them.
		if tags = provisioning.TagsAfter(cur.tags, p.AddTags, p.RemoveTags); len(tags) == 0 {
			tags = nil
		}
	}
	after := sessionState{storedDevice: rowAfter(&cur, p.Token, u, tags)}
	// The column now holds d.confirmedPaths, set or equal; interned.
	after.confirmedPaths = d.confirmedPaths
	after.confirmed, after.hasConfirmed = digest, d.confirmedPaths != ""
	w.afterCommit(func() { w.sessions.put(tenant, id, after) })
	return created, nil
}

// updateDevice writes the device row's columns the diff changes, and
// returns what it wrote (w's: valid until the next diff).
func (w *writer) updateDevice(d *diffOp, cur *storedDevice) (*deviceUpdate, error) {
	p := &d.plan
	u := &w.update
	*u = deviceUpdate{}
	if dev := p.DeviceID; dev != nil {
		u.set(colManufacturer, dev.Manufacturer)
		u.set(colOUIRaw, dev.OUI)
		u.setIndexed(colOUI, cur.oui, p.OUI)
		u.setIndexed(colProductClass, cur.productClass, dev.ProductClass)
		u.setIndexed(colSerialNumber, cur.serialNumber, dev.SerialNumber)
	}
	if in := p.Inform; in != nil {
		u.set(colLastInform, p.InformTime.UnixMilli())
		u.set(colRemoteIP, addrText(in.RemoteIP))
		u.set(colLastEvents, d.events)
		if p.Boot {
			u.set(colLastBoot, p.InformTime.UnixMilli())
		}
		if p.Bootstrap {
			u.set(colLastBootstrap, p.InformTime.UnixMilli())
		}
	}
	f := &p.Fields
	if f.SoftwareVersion != nil {
		u.setIndexed(colSoftwareVersion, cur.softwareVersion, *f.SoftwareVersion)
	}
	if f.HardwareVersion != nil {
		u.setIndexed(colHardwareVersion, cur.hardwareVersion, *f.HardwareVersion)
	}
	for _, s := range []struct {
		col int
		v   *string
	}{
		{colDataModelRoot, f.DataModelRoot}, {colProvisioningCode, f.ProvisioningCode},
		{colCRURL, f.ConnectionRequestURL}, {colCRUDPAddress, f.UDPConnectionRequestAddress},
		{colCRJabberID, f.JabberID},
	} {
		if s.v != nil {
			u.set(s.col, *s.v)
		}
	}
	if c := p.SealedConnectionRequest; c != nil {
		u.set(colCRUsername, c.Username)
		u.set(colCRPassword, d.crPass)
		u.set(colCRPasswordKey, c.KeyID)
		if cur.crRefused != 0 {
			u.set(colCRRefused, nil)
		}
		if !p.CRPendingTime.IsZero() && cur.crpUser != nil && p.CRPendingTime.UnixMilli() == cur.crpTime {
			for _, col := range []int{colCRPUsername, colCRPPassword, colCRPPasswordKey, colCRPTime} {
				u.set(col, nil)
			}
		}
	}
	if !p.CRRefused.IsZero() {
		u.set(colCRRefused, p.CRRefused.UnixMilli())
	}
	if c := p.SealedCPE; c != nil {
		u.set(colCPEUsername, c.Username)
		u.set(colCPEPassword, d.cpePass)
		u.set(colCPEPasswordKey, c.KeyID)
	}
	if !p.FullDiscovery.IsZero() {
		u.set(colFullDiscovery, p.FullDiscovery.UnixMilli())
	}
	if p.Presets != nil && *p.Presets != cur.presets {
		u.set(colPresets, *p.Presets)
	}
	// A takeover counts once per session, however often its diffs are
	// applied.
	if p.Takeover && (p.SessionID == "" || p.SessionID != cur.takeoverSession) {
		u.set(colTakeover, p.Time.UnixMilli())
		u.set(colTakeoverSession, p.SessionID)
	}

	if d.confirmedPaths != cur.confirmedPaths {
		u.set(colConfirmedPaths, d.confirmedPaths)
	}
	switch {
	case d.confirmedPaths != "":
		u.set(colConfirmedAt, p.Time.UnixMilli())
	case cur.confirmedAt != 0:
		u.set(colConfirmedAt, nil)
	}
	if d.tree.setDelta {
		if d.tree.delta == nil {
			u.set(colTreeDelta, nil)
		} else {
			u.set(colTreeDelta, d.tree.delta)
		}
	}
	if d.tree.setBytes {
		u.set(colTreeBytes, d.tree.bytes)
	}

	args := append(w.args[:0], p.Token, p.Time.UnixMilli())
	for col := range numDeviceCols {
		if u.mask&(1<<col) != 0 {
			args = append(args, u.vals[col])
		}
	}
	args = append(args, d.tenant, d.id)
	w.args = args
	defer clear(w.args)

	stmt, ok := w.updates[u.mask]
	if !ok {
		var err error
		if stmt, err = w.rc.prepare(updateSQL(u.mask)); err != nil {
			return nil, fmt.Errorf("prepare device update: %w", err)
		}
		if len(w.updates) < maxCachedUpdates {
			w.updates[u.mask] = stmt
		} else {
			defer stmt.Close()
		}
	}
	if _, err := w.rc.exec(stmt, args...); err != nil {
		return nil, fmt.Errorf("update device: %w", err)
	}
	return u, nil
}

// maxInternedPaths bounds the confirmed-paths strings internPaths keeps.
const maxInternedPaths = 1024

// internPaths returns the writer's one copy of the confirmed-paths string
// b spells (see "Confirmed entries"): the devices of a model confirm the
// same paths, a few hundred bytes that every diff would otherwise allocate
// and the session cache hold once per device. Beyond maxInternedPaths
// different strings, the others are the diff's own.
func (w *writer) internPaths(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	if v, ok := w.paths[string(b)]; ok {
		return v
	}
	s := string(b)
	if len(w.paths) < maxInternedPaths {
		w.paths[s] = s
	}
	return s
}

// rowAfter is the row readDevice would read once the diff committed: cur
// with token, the columns u wrote, and tags. What it keeps from u is
// copied, so that the session cache holds on to no buffer of the writer's
// and no request a plan's strings were decoded from.
func rowAfter(cur *storedDevice, token int64, u *deviceUpdate, tags []string) storedDevice {
	r := *cur
	r.token, r.tags = token, tags
	str := func(old string, v any) string {
		if s, _ := v.(string); s != old {
			return strings.Clone(s)
		}
		return old
	}
	num := func(v any) int64 {
		n, _ := v.(int64)
		return n
	}
	ptr := func(old *string, v any) *string {
		s, ok := v.(string)
		if !ok {
			return nil
		}
		if old != nil && *old == s {
			return old
		}
		s = strings.Clone(s)
		return &s
	}
	// Where each column of readDeviceSQL lies in the row, by its type.
	texts := [numDeviceCols]*string{colTakeoverSession: &r.takeoverSession, colOUI: &r.oui,
		colProductClass: &r.productClass, colSerialNumber: &r.serialNumber, colSoftwareVersion: &r.softwareVersion,
		colHardwareVersion: &r.hardwareVersion, colConfirmedPaths: &r.confirmedPaths, colDataModelRoot: &r.root,
		colCRPassword: &r.crPass, colCRPasswordKey: &r.crKey, colCRPPassword: &r.crpPass, colCRPPasswordKey: &r.crpKey,
		colPresets: &r.presets}
	ints := [numDeviceCols]*int64{colConfirmedAt: &r.confirmedAt, colFullDiscovery: &r.fullDiscovery,
		colCRPTime: &r.crpTime, colCRRefused: &r.crRefused, colTreeBytes: &r.treeBytes}
	users := [numDeviceCols]**string{colCRUsername: &r.crUser, colCRPUsername: &r.crpUser}
	for col := range numDeviceCols {
		if u.mask&(1<<col) == 0 {
			continue
		}
		switch v := u.vals[col]; {
		case texts[col] != nil:
			*texts[col] = str(*texts[col], v)
		case ints[col] != nil:
			*ints[col] = num(v)
		case users[col] != nil:
			*users[col] = ptr(*users[col], v)
		case col == colTreeDelta:
			b, _ := v.([]byte)
			r.delta = bytes.Clone(b)
		}
	}
	return r
}

// eventsJSON encodes the events of an Inform as last_events holds them.
func eventsJSON(events []cwmp.Event) (string, error) {
	if events == nil {
		events = []cwmp.Event{}
	}
	ev, err := json.Marshal(events)
	if err != nil {
		return "", fmt.Errorf("encode events: %w", err)
	}
	return string(ev), nil
}

// writeParams applies updates (sorted by path), see mergeParamsSQL.
func (w *writer) writeParams(tenant, id string, updates []storekit.Update, updated int64) error {
	for rest := updates; len(rest) > 0; {
		chunk := rest[:min(len(rest), maxMergeRows)]
		rest = rest[len(chunk):]
		if err := w.mergeParams(tenant, id, chunk, updated); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) mergeParams(tenant, id string, chunk []storekit.Update, updated int64) error {
	stmt, err := w.rowsStmt(&w.merges, len(chunk), mergeParamsSQL)
	if err != nil {
		return fmt.Errorf("prepare parameter merge: %w", err)
	}
	args := w.args[:0]
	for i := range chunk {
		u := &chunk[i]
		value, typ, number, instant := paramValue(u)
		writable, notification := attributeColumns(u.Writable, u.Notification)
		args = append(args, tenant, id, u.Path, value, typ, number, instant, writable, notification, updated)
	}
	w.args = args
	defer clear(w.args)
	rows, err := w.rc.query(stmt, args...)
	if err != nil {
		return fmt.Errorf("merge parameters: %w", err)
	}
	// done marks the entries written; chunk is sorted by path.
	done := slices.Grow(w.done[:0], len(chunk))[:len(chunk)]
	clear(done)
	w.done = done
	row := slices.Grow(w.row[:0], 1)[:1]
	w.row = row
	for {
		err := rows.Next(row)
		if errors.Is(err, io.EOF) {
			break
		}
		var path string
		if err == nil {
			path, err = text(row[0])
		}
		if err != nil {
			_ = rows.Close()
			return fmt.Errorf("merge parameters: %w", err)
		}
		if i, found := slices.BinarySearchFunc(chunk, path, func(u storekit.Update, path string) int {
			return strings.Compare(u.Path, path)
		}); found {
			done[i] = true
		}
	}
	clear(row)
	if err := rows.Close(); err != nil {
		return fmt.Errorf("merge parameters: %w", err)
	}
	for i := range chunk {
		if done[i] {
			continue
		}
		u := &chunk[i]
		value, typ, number, instant := paramValue(u)
		writable, notification := attributeColumns(u.Writable, u.Notification)
		if _, err := w.rc.exec(w.stmts.setParamValue, value, typ, number, instant, writable, notification, updated,
			tenant, id, u.Path); err != nil {
			return fmt.Errorf("set parameter %q: %w", u.Path, err)
		}
	}
	return nil
}

// splitConfirmed returns the updates of p that become its confirmed
// entries and the others, both sorted by path (see "Confirmed entries").
func (w *writer) splitConfirmed(p *storekit.Plan, cur *storedDevice) (confirm, rest []storekit.Update) {
	if p.Time.UnixMilli() < cur.confirmedAt {
		return nil, p.Updates
	}
	n := 0
	for i := range p.Updates {
		if confirmable(&p.Updates[i]) {
			n++
		}
	}
	if n == 0 || n > maxConfirmed {
		return nil, p.Updates
	}
	if n == len(p.Updates) {
		return p.Updates, nil
	}
	confirm = slices.Grow(w.confirm[:0], n)
	rest = slices.Grow(w.rest[:0], len(p.Updates)-n)
	for _, u := range p.Updates {
		if confirmable(&u) {
			confirm = append(confirm, u)
		} else {
			rest = append(rest, u)
		}
	}
	w.confirm, w.rest = confirm, rest
	return confirm, rest
}

// confirmable: the update reports a value and nothing else.
func confirmable(u *storekit.Update) bool {
	_, wk := u.Writable.Bool()
	_, nk := u.Notification.Value()
	return u.HasValue && !wk && !nk
}

// joinPaths returns the paths of updates, one per line, in *buf.
func joinPaths(buf *[]byte, updates []storekit.Update) []byte {
	b := (*buf)[:0]
	for i := range updates {
		if i > 0 {
			b = append(b, '\n')
		}
		b = append(b, updates[i].Path...)
	}
	*buf = b
	return b
}

// rowsStmt returns the statement of cache for n rows, preparing build(n)
// the first time.
func (w *writer) rowsStmt(cache *[maxMergeRows + 1]rawStmt, n int, build func(int) string) (rawStmt, error) {
	if stmt := cache[n]; stmt != nil {
		return stmt, nil
	}
	stmt, err := w.rc.prepare(build(n))
	if err != nil {
		return nil, err
	}
	cache[n] = stmt
	return stmt, nil
}

// paramValue returns the value columns of an update: NULLs when it carries
// no value.
func paramValue(u *storekit.Update) (value, typ, number, instant any) {
	if !u.HasValue {
		return nil, nil, nil, nil
	}
	value, typ, number = u.Value, u.Type, u.Number
	if u.IsInstant {
		instant = u.Instant.UnixMilli()
	}
	return value, typ, number, instant
}

// attributeColumns returns the attribute columns of an entry's row:
// NULL where unknown.
func attributeColumns(w store.Tri, n store.Notification) (writable, notification any) {
	if b, known := w.Bool(); known {
		writable = b
	}
	if v, known := n.Value(); known {
		notification = int64(v)
	}
	return writable, notification
}

func (w *writer) changeTags(tenant, id string, add, remove []string) error {
	for _, t := range add {
		if _, err := w.rc.exec(w.stmts.addTag, tenant, id, t); err != nil {
			return fmt.Errorf("add tag %q: %w", t, err)
		}
	}
	for _, t := range remove {
		if _, err := w.rc.exec(w.stmts.removeTag, tenant, id, t); err != nil {
			return fmt.Errorf("remove tag %q: %w", t, err)
		}
	}
	return nil
}

// changeTagsOp is AddTags or RemoveTags: tags of an existing device, which
// also becomes Updated.
func (w *writer) changeTagsOp(tenant, id string, now int64, add, remove []string) error {
	if n, err := w.rc.exec(w.stmts.touchDevice, now, tenant, id); err != nil {
		return fmt.Errorf("touch device: %w", err)
	} else if n == 0 {
		return refuse(store.ErrNotFound)
	}
	// The presets that match the device may have changed with its tags:
	// touchDevice forgot its fingerprint, and so does the cache.
	w.forgetSession(tenant, id)
	return w.changeTags(tenant, id, add, remove)
}

// setCPECredentials is SetCPECredentials: new per-device credentials of an
// existing device, which also becomes Updated. The session cache holds no
// CPE credentials, so it stays as it is.
func (w *writer) setCPECredentials(tenant, id string, now int64, c *storekit.Sealed) error {
	n, err := w.rc.exec(w.stmts.setCPECredentials, c.Username, sealedText(c), c.KeyID, now, tenant, id)
	if err != nil {
		return fmt.Errorf("update device: %w", err)
	}
	if n == 0 {
		return refuse(store.ErrNotFound)
	}
	return nil
}

// setCRCredentials is SetConnectionRequestCredentials: an operator's
// credentials, pending or the CPE's; the session cache forgets the
// device, whose next session reads them from the row.
func (w *writer) setCRCredentials(tenant, id string, now int64, c *storekit.Sealed, pending bool) error {
	var n int64
	var err error
	if pending {
		n, err = w.rc.exec(w.stmts.setCRPending, c.Username, sealedText(c), c.KeyID, now, now, tenant, id)
	} else {
		n, err = w.rc.exec(w.stmts.setCRCredentials, c.Username, sealedText(c), c.KeyID, now, tenant, id)
	}
	if err != nil {
		return fmt.Errorf("update device: %w", err)
	}
	if n == 0 {
		return refuse(store.ErrNotFound)
	}
	w.forgetSession(tenant, id)
	return nil
}

// forgetSession is for an op that writes the device's row other than by a
// diff: a later diff of this transaction reads the row from the database
// (touched), and the session cache drops the device once the write is
// committed.
func (w *writer) forgetSession(tenant, id string) {
	w.touched[sessionKey{tenant, id}] = struct{}{}
	w.afterCommit(func() { w.sessions.delete(tenant, id) })
}

func (w *writer) deleteDevice(tenant, id string) error {
	if n, err := w.rc.exec(w.stmts.deleteDevice, tenant, id); err != nil {
		return fmt.Errorf("delete device row: %w", err)
	} else if n == 0 {
		return refuse(store.ErrNotFound)
	}
	if _, err := w.rc.exec(w.stmts.deleteParams, tenant, id); err != nil {
		return fmt.Errorf("delete parameters: %w", err)
	}
	if _, err := w.rc.exec(w.stmts.deleteTags, tenant, id); err != nil {
		return fmt.Errorf("delete tags: %w", err)
	}
	if _, err := w.rc.exec(w.stmts.deleteTree, tenant, id); err != nil {
		return fmt.Errorf("delete parameter tree: %w", err)
	}
	w.forgetSession(tenant, id)
	return nil
}

// maxTreeBytes bounds a device's encoded tree, as MongoDB's 16 MiB
// documents bound the other store's: every later diff rewrites the whole
// tree under the one writer, and every read decodes it. A diff that would
// grow a tree past it is refused (ErrInvalidArgument) and writes nothing.
var maxTreeBytes = 16 << 20

// writeTree applies the diff's deletions and updates to the device's
// tree (tree.go) or, when it only adds and updates a few entries, to its
// delta (treedelta.go), setting d.tree.
func (w *writer) writeTree(d *diffOp, cur *storedDevice) error {
	p := &d.plan
	if deltaOnly(p, cur, w.deltaEntries) {
		var n int
		var err error
		w.deltaBuf, w.treeScratch, n, err = mergeEncoded(w.deltaBuf, w.treeScratch, cur.delta, p, p.Time, cur.confirmedPaths, cur.confirmedAt)
		if err != nil {
			return fmt.Errorf("read parameter tree delta: %w", err)
		}
		// The tree with the delta applied is at most the two together
		// and deltaSlack a patch: when that is within maxTreeBytes, so
		// is the tree the diff leaves; otherwise the fold below
		// measures it.
		if n <= w.deltaEntries && len(w.deltaBuf) <= maxDeltaBytes &&
			cur.treeBytes+int64(len(w.deltaBuf)+n*deltaSlack) <= int64(maxTreeBytes) {
			d.tree = treeCols{delta: w.deltaBuf, setDelta: true}
			return nil
		}
	}
	row := slices.Grow(w.row[:0], 1)[:1]
	w.row = row
	defer clear(row)
	found, err := w.rc.queryRow(w.stmts.readTree, row, d.tenant, d.id)
	if err != nil {
		return fmt.Errorf("read parameter tree: %w", err)
	}
	var stored []byte
	if found {
		if stored, err = blob(row[0]); err != nil {
			return fmt.Errorf("read parameter tree: %w", err)
		}
	}
	if len(cur.delta) > 0 && !p.DeleteAll {
		// Fold the delta in first: the plan applies to the tree as
		// readers saw it.
		if w.foldBuf, _, err = applyDelta(w.foldBuf, stored, cur.delta); err != nil {
			return fmt.Errorf("read parameter tree: %w", err)
		}
		stored = w.foldBuf
	}
	var n int
	w.treeBuf, w.treeScratch, n, err = mergeEncoded(w.treeBuf, w.treeScratch, stored, p, p.Time, cur.confirmedPaths, cur.confirmedAt)
	if err != nil {
		return fmt.Errorf("read parameter tree: %w", err)
	}
	if len(w.treeBuf) > maxTreeBytes {
		return fmt.Errorf("parameter tree of %d bytes over the limit of %d: %w", len(w.treeBuf), maxTreeBytes, store.ErrInvalidArgument)
	}
	size := int64(len(w.treeBuf))
	if n == 0 {
		size = 0
		_, err = w.rc.exec(w.stmts.deleteTree, d.tenant, d.id)
	} else {
		_, err = w.rc.exec(w.stmts.writeTree, d.tenant, d.id, w.treeBuf)
	}
	if err != nil {
		return fmt.Errorf("write parameter tree: %w", err)
	}
	d.tree = treeCols{setDelta: cur.delta != nil, setBytes: size != cur.treeBytes, bytes: size}
	return nil
}

// writeIndex keeps the rows of indexed paths in step with the tree.
func (w *writer) writeIndex(d *diffOp) error {
	st, rc, p := &w.stmts, &w.rc, &d.plan
	tenant, id := d.tenant, d.id
	if p.DeleteAll {
		if _, err := rc.exec(st.deleteParams, tenant, id); err != nil {
			return fmt.Errorf("delete parameters: %w", err)
		}
	}
	for _, pre := range p.Deletes {
		// A prefix ends with ".", so its upper bound always exists.
		upper, _ := storekit.UpperBound(pre)
		if _, err := rc.exec(st.deleteParamsPrefix, tenant, id, pre, upper); err != nil {
			return fmt.Errorf("delete parameters under %q: %w", pre, err)
		}
	}
	for _, path := range p.DeleteEntries {
		if _, err := rc.exec(st.deleteParam, tenant, id, path); err != nil {
			return fmt.Errorf("delete parameter %q: %w", path, err)
		}
	}
	idx := w.indexedUpdates[:0]
	for _, u := range p.Updates {
		if w.indexed.has(u.Path) {
			idx = append(idx, u)
		}
	}
	w.indexedUpdates = idx
	defer clear(w.indexedUpdates)
	return w.writeParams(tenant, id, idx, p.Time.UnixMilli())
}
