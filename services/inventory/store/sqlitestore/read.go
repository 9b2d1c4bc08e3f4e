package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

const deviceColumns = `d.tenant, d.id, d.manufacturer, d.oui_raw, d.oui, d.product_class, d.serial_number,
	d.software_version, d.hardware_version, d.provisioning_code, d.data_model_root,
	d.cr_url, d.cr_udp_address, d.cr_jabber_id, d.cr_username, d.cr_password, d.cr_password_key, d.cpe_username, d.cpe_password, d.cpe_password_key,
	d.crp_username, d.crp_password, d.crp_password_key, d.crp_time, d.cr_refused,
	d.last_inform, d.remote_ip, d.last_events, d.registered, d.last_boot, d.last_bootstrap, d.full_discovery,
	d.takeover_count, d.last_takeover, d.updated, d.fencing_token, d.presets`

// tagsColumn reads a device's tags in the same statement as its row, joined
// by spaces (a character tags cannot hold), from the device_tags primary
// key. The primary key yields them sorted, but only in practice: scanDevice
// sorts them, which costs nothing on sorted input, where an ORDER BY in the
// aggregate would build a temporary b-tree for every Get.
const tagsColumn = `(SELECT group_concat(t.tag, ' ') FROM device_tags t
	WHERE t.tenant = d.tenant AND t.device_id = d.id)`

// getDeviceSQL reads one device with its tags.
const getDeviceSQL = `SELECT ` + deviceColumns + `, ` + tagsColumn + ` FROM devices d WHERE d.tenant = ? AND d.id = ?`

// treeSQL reads a device's parameter tree (tree.go).
const treeSQL = `SELECT tree FROM device_trees WHERE tenant = ? AND device_id = ?`

// confirmedSQL reads what the Updated times of a device's confirmed entries
// need (apply.go, "Confirmed entries"), and the device's tree delta
// (treedelta.go).
const confirmedSQL = `SELECT confirmed_paths, confirmed_at, tree_delta FROM devices WHERE tenant = ? AND id = ?`

// readStmts are the statements of Get, prepared once per pooled reader
// connection by database/sql.
type readStmts struct {
	device *sql.Stmt
	// tree reads a device's parameter tree.
	tree, confirmed, session *sql.Stmt
}

func (rs *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	for _, s := range []struct {
		dst **sql.Stmt
		sql string
	}{
		{&rs.device, getDeviceSQL},
		{&rs.tree, treeSQL},
		{&rs.confirmed, confirmedSQL},
		{&rs.session, sessionStateSQL},
	} {
		stmt, err := db.PrepareContext(ctx, s.sql)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", strings.Join(strings.Fields(s.sql), " "), err)
		}
		*s.dst = stmt
	}
	return nil
}

func (rs *readStmts) close() {
	for _, s := range []*sql.Stmt{rs.device, rs.tree, rs.confirmed, rs.session} {
		if s != nil {
			_ = s.Close()
		}
	}
}

// scanDevice reads deviceColumns and, when tags is not nil, tagsColumn into
// it, opening the passwords with keys.
func scanDevice(sc interface{ Scan(...any) error }, tags *sql.NullString, ec *eventsCache, keys *secretbox.Keyring) (store.Device, error) {
	var (
		dev                              store.Device
		lastInform, registered, lastBoot sql.NullInt64
		lastBootstrap, fullDiscovery     sql.NullInt64
		lastTakeover, updated            sql.NullInt64
		crUser, crPass, cpeUser, cpePass sql.NullString
		crKey, cpeKey                    sql.NullString
		crpUser, crpPass, crpKey         sql.NullString
		crpTime, crRefused               sql.NullInt64
		remoteIP, events                 string
		token, takeovers                 int64
	)
	dest := []any{&dev.Tenant, &dev.ID, &dev.DeviceID.Manufacturer, &dev.DeviceID.OUI, &dev.OUI,
		&dev.DeviceID.ProductClass, &dev.DeviceID.SerialNumber,
		&dev.SoftwareVersion, &dev.HardwareVersion, &dev.ProvisioningCode, &dev.DataModelRoot,
		&dev.ConnectionRequest.URL, &dev.ConnectionRequest.UDPAddress, &dev.ConnectionRequest.JabberID,
		&crUser, &crPass, &crKey, &cpeUser, &cpePass, &cpeKey,
		&crpUser, &crpPass, &crpKey, &crpTime, &crRefused,
		&lastInform, &remoteIP, &events, &registered, &lastBoot, &lastBootstrap, &fullDiscovery,
		&takeovers, &lastTakeover, &updated, &token, &dev.PresetsFingerprint, tags}
	if tags == nil {
		dest = dest[:len(dest)-1]
	}
	if err := sc.Scan(dest...); err != nil {
		return store.Device{}, err
	}
	dev.LastInform, dev.Registered, dev.LastBoot = fromMS(lastInform), fromMS(registered), fromMS(lastBoot)
	dev.LastBootstrap, dev.FullDiscovery = fromMS(lastBootstrap), fromMS(fullDiscovery)
	dev.LastTakeover, dev.Updated = fromMS(lastTakeover), fromMS(updated)
	dev.TakeoverCount, dev.FencingToken = uint64(takeovers), uint64(token)
	var err error
	if crUser.Valid {
		dev.ConnectionRequestCredentials, err = openStored(keys, dev.Tenant, dev.ID, storekit.FieldConnectionRequest,
			crUser.String, crPass.String, crKey.String)
		if err != nil {
			return store.Device{}, err
		}
	}
	if crpUser.Valid {
		dev.PendingConnectionRequestCredentials, err = openStored(keys, dev.Tenant, dev.ID, storekit.FieldConnectionRequestPending,
			crpUser.String, crpPass.String, crpKey.String)
		if err != nil {
			return store.Device{}, err
		}
		dev.PendingConnectionRequestTime = fromMS(crpTime)
	}
	dev.ConnectionRequestRefused = fromMS(crRefused)
	if cpeUser.Valid {
		dev.CPECredentials, err = openStored(keys, dev.Tenant, dev.ID, storekit.FieldCPE, cpeUser.String, cpePass.String, cpeKey.String)
		if err != nil {
			return store.Device{}, err
		}
	}
	if remoteIP != "" {
		if dev.RemoteIP, err = netip.ParseAddr(remoteIP); err != nil {
			return store.Device{}, fmt.Errorf("decode remote IP: %w", err)
		}
	}
	if dev.LastEvents, err = ec.decode(events); err != nil {
		return store.Device{}, err
	}
	if tags != nil {
		dev.Tags = splitTags(tags.String)
	}
	return dev, nil
}

// eventsCache decodes last_events, remembering the decoded form of the
// first maxCachedEvents short values it sees: a fleet's Informs carry a
// handful of distinct event lists ("2 PERIODIC", "6 CONNECTION REQUEST"),
// and decoding the same JSON for every Get cost a twentieth of the Get.
// Cached slices are never handed out, only copies.
type eventsCache struct {
	m sync.Map // string -> []cwmp.Event
	n atomic.Int32
}

const (
	maxCachedEvents   = 256
	maxCachedEventLen = 256
)

// decode reads last_events; a nil cache decodes every time.
func (c *eventsCache) decode(s string) ([]cwmp.Event, error) {
	if s == "[]" {
		return nil, nil
	}
	if c != nil {
		if v, ok := c.m.Load(s); ok {
			return slices.Clone(v.([]cwmp.Event)), nil
		}
	}
	var events []cwmp.Event
	if err := json.Unmarshal([]byte(s), &events); err != nil {
		return nil, fmt.Errorf("decode events: %w", err)
	}
	if len(events) == 0 {
		return nil, nil
	}
	if c != nil && len(s) <= maxCachedEventLen && c.n.Load() < maxCachedEvents {
		if _, loaded := c.m.LoadOrStore(strings.Clone(s), slices.Clone(events)); !loaded {
			c.n.Add(1)
		}
	}
	return events, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string, opts store.ReadOptions) (store.Device, error) {
	dev, err := s.get(ctx, tenant, id, opts)
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s/%s: %w", tenant, id, err)
	}
	return dev, nil
}

func (s *Store) get(ctx context.Context, tenant, id string, opts store.ReadOptions) (store.Device, error) {
	if err := storekit.Key(tenant, id); err != nil {
		return store.Device{}, err
	}
	st, err := s.state()
	if err != nil {
		return store.Device{}, err
	}
	if !opts.WantParams() {
		// One statement is one read transaction: the row and its tags
		// come from one snapshot. It is a primary-key lookup that cannot
		// run long (a WAL reader waits for no writer), so it is not made
		// cancellable: a context with Done costs two watcher goroutines
		// per query (database/sql's and the driver's), more than the
		// lookup itself.
		if err := ctx.Err(); err != nil {
			return store.Device{}, err
		}
		var tags sql.NullString
		dev, err := scanDevice(st.rs.device.QueryRowContext(context.WithoutCancel(ctx), tenant, id), &tags, &st.events, s.keys)
		if errors.Is(err, sql.ErrNoRows) {
			return store.Device{}, store.ErrNotFound
		} else if err != nil {
			return store.Device{}, fmt.Errorf("read device: %w", err)
		}
		return dev, nil
	}
	var dev store.Device
	// One read transaction: the device, its tags and its tree come from
	// one snapshot even while a diff is being applied.
	err = inTx(ctx, st.r, func(tx *sql.Tx) error {
		var (
			tags sql.NullString
			err  error
		)
		dev, err = scanDevice(tx.StmtContext(ctx, st.rs.device).QueryRowContext(ctx, tenant, id), &tags, &st.events, s.keys)
		if errors.Is(err, sql.ErrNoRows) {
			return store.ErrNotFound
		} else if err != nil {
			return fmt.Errorf("read device: %w", err)
		}
		return loadParams(ctx, tx, &st.rs, &dev, opts.ParamPrefixes)
	})
	return dev, err
}

// loadTags fills Tags of devs (all of tenant) in one query.
func loadTags(ctx context.Context, tx *sql.Tx, tenant string, devs []store.Device) error {
	if len(devs) == 0 {
		return nil
	}
	idx := make(map[string]int, len(devs))
	args := make([]any, 0, len(devs)+1)
	args = append(args, tenant)
	for i, d := range devs {
		idx[d.ID] = i
		args = append(args, d.ID)
	}
	rows, err := tx.QueryContext(ctx, `SELECT device_id, tag FROM device_tags WHERE tenant = ? AND device_id IN (`+
		placeholders(len(devs))+`) ORDER BY device_id, tag`, args...)
	if err != nil {
		return fmt.Errorf("read tags: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, tag string
		if err := rows.Scan(&id, &tag); err != nil {
			return fmt.Errorf("read tags: %w", err)
		}
		if i, ok := idx[id]; ok {
			devs[i].Tags = append(devs[i].Tags, tag)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read tags: %w", err)
	}
	return nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// loadParams reads the entries of dev under prefixes (all when none) from
// its tree and delta; rs is nil where the caller has no prepared
// statements.
func loadParams(ctx context.Context, tx *sql.Tx, rs *readStmts, dev *store.Device, prefixes []string) error {
	var row *sql.Row
	if rs != nil {
		row = tx.StmtContext(ctx, rs.tree).QueryRowContext(ctx, dev.Tenant, dev.ID)
	} else {
		row = tx.QueryRowContext(ctx, treeSQL, dev.Tenant, dev.ID)
	}
	var tree []byte
	if err := row.Scan(&tree); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("read parameters: %w", err)
	}
	if rs != nil {
		row = tx.StmtContext(ctx, rs.confirmed).QueryRowContext(ctx, dev.Tenant, dev.ID)
	} else {
		row = tx.QueryRowContext(ctx, confirmedSQL, dev.Tenant, dev.ID)
	}
	var (
		paths string
		at    sql.NullInt64
		delta []byte
	)
	if err := row.Scan(&paths, &at, &delta); err != nil {
		return fmt.Errorf("read confirmed parameters: %w", err)
	}
	if slices.Contains(prefixes, "") {
		prefixes = nil
	}
	var keep func([]byte) bool
	if len(prefixes) > 0 {
		keep = func(path []byte) bool { return hasAnyPrefix(path, prefixes) }
	}
	// decodeTreeFunc copies the paths and values into one string, rather
	// than two per entry.
	entries, err := decodeMerged(tree, delta, keep)
	if err != nil {
		return fmt.Errorf("read parameters: %w", err)
	}
	dev.Params = make(map[string]store.Parameter, len(entries))
	for i := range entries {
		dev.Params[entries[i].path] = entries[i].Parameter
	}
	applyConfirmed(dev, paths, at)
	return nil
}

func hasAnyPrefix(path []byte, prefixes []string) bool {
	for _, p := range prefixes {
		if len(path) >= len(p) && string(path[:len(p)]) == p {
			return true
		}
	}
	return false
}

// applyConfirmed moves the Updated time of dev's confirmed entries (paths,
// one per line) to the time of their last confirmation, when later.
func applyConfirmed(dev *store.Device, paths string, at sql.NullInt64) {
	if paths == "" || !at.Valid {
		return
	}
	t := fromMS(at)
	for path := range strings.SplitSeq(paths, "\n") {
		if p, ok := dev.Params[path]; ok && p.Updated.Before(t) {
			p.Updated = t
			dev.Params[path] = p
		}
	}
}

// List implements store.Store.
func (s *Store) List(ctx context.Context, f store.Filter, page store.PageRequest, opts store.ReadOptions) (store.Page, error) {
	out, err := s.list(ctx, f, page, opts)
	if err != nil {
		return store.Page{}, fmt.Errorf("list devices of %q: %w", f.Tenant, err)
	}
	return out, nil
}

func (s *Store) list(ctx context.Context, f store.Filter, page store.PageRequest, opts store.ReadOptions) (store.Page, error) {
	cf, err := storekit.CheckFilter(f)
	if err != nil {
		return store.Page{}, err
	}
	after, err := storekit.DecodeCursor(page.Cursor)
	if err != nil {
		return store.Page{}, err
	}
	limit := storekit.PageSize(page)
	st, err := s.state()
	if err != nil {
		return store.Page{}, err
	}
	q, args := listQuery(cf, after, limit+1, &st.indexed)
	var out store.Page
	err = inTx(ctx, st.r, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("query devices: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			dev, err := scanDevice(rows, nil, &st.events, s.keys)
			if err != nil {
				return fmt.Errorf("read device: %w", err)
			}
			out.Devices = append(out.Devices, dev)
		}
		if err := rows.Err(); err != nil {
			return fmt.Errorf("query devices: %w", err)
		}
		if len(out.Devices) > limit {
			out.Devices = out.Devices[:limit]
			out.Next = storekit.EncodeCursor(out.Devices[limit-1].ID)
		}
		if err := loadTags(ctx, tx, cf.Tenant, out.Devices); err != nil {
			return err
		}
		if opts.WantParams() {
			for i := range out.Devices {
				if err := loadParams(ctx, tx, nil, &out.Devices[i], opts.ParamPrefixes); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// listQuery builds the keyset-paginated query for f. Tag conditions and
// conditions on indexed paths are IN (subquery) terms: each subquery is an
// index range scan (device_tags_tag, parameters_value or parameters_number)
// that yields the matching device ids, so a selective condition never
// scans the devices table. A condition on a path that is not indexed reads
// the trees of the devices the other terms leave, in id order, until the
// page is full (see "Parameter trees" in tree.go).
func listQuery(f storekit.Filter, after string, limit int, idx *indexSet) (string, []any) {
	var (
		where = []string{"d.tenant = ?", "d.id > ?"}
		args  = []any{f.Tenant, after}
	)
	eq := func(col string, v *string) {
		if v != nil {
			where = append(where, col+" = ?")
			args = append(args, *v)
		}
	}
	if len(f.IDs) > 0 {
		where = append(where, "d.id IN ("+placeholders(len(f.IDs))+")")
		for _, id := range f.IDs {
			args = append(args, id)
		}
	}
	eq("d.manufacturer", f.Manufacturer)
	eq("d.oui", f.OUI)
	eq("d.product_class", f.ProductClass)
	eq("d.serial_number", f.SerialNumber)
	eq("d.software_version", f.SoftwareVersion)
	eq("d.hardware_version", f.HardwareVersion)
	if !f.Since.IsZero() {
		where = append(where, "d.last_inform >= ?")
		args = append(args, f.Since.UnixMilli())
	}
	if !f.Before.IsZero() {
		where = append(where, "d.last_inform < ?")
		args = append(args, f.Before.UnixMilli())
	}
	for _, t := range f.Tags {
		where = append(where, "d.id IN (SELECT device_id FROM device_tags WHERE tenant = ? AND tag = ?)")
		args = append(args, f.Tenant, t)
	}
	for _, c := range f.Conditions {
		if !idx.has(c.Path) {
			op, want := c.Op, "1"
			if op == store.OpNotExists {
				op, want = store.OpExists, "0"
			}
			// The tree is a scalar subquery (NULL when the device has
			// none) so that a device whose entries are all in its delta
			// is matched too.
			where = append(where, treeMatchFunc+"((SELECT t.tree FROM device_trees t WHERE t.tenant = d.tenant AND t.device_id = d.id), "+
				"d.tree_delta, ?, ?, ?) = "+want)
			args = append(args, c.Path, int64(op), c.Value)
			continue
		}
		in := "d.id IN"
		if c.Op == store.OpNotExists {
			in = "d.id NOT IN"
		}
		sub := in + " (SELECT device_id FROM parameters WHERE tenant = ? AND path = ?"
		args = append(args, f.Tenant, c.Path)
		switch c.Op {
		case store.OpEq:
			sub += " AND value = ?"
			args = append(args, c.Value)
		case store.OpNe:
			sub += " AND value IS NOT NULL AND value <> ?"
			args = append(args, c.Value)
		case store.OpLt, store.OpGt:
			// Each value compares by its type (see store.OpLt).
			op := "<"
			if c.Op == store.OpGt {
				op = ">"
			}
			branches := []string{"(number IS NULL AND instant IS NULL AND value " + op + " ?)"}
			args = append(args, c.Value)
			if c.Number != nil {
				branches = append(branches, "(number IS NOT NULL AND number "+op+" ?)")
				args = append(args, c.Number)
			}
			if c.IsInstant {
				branches = append(branches, "(instant IS NOT NULL AND instant "+op+" ?)")
				args = append(args, c.Instant.UnixMilli())
			}
			sub += " AND (" + strings.Join(branches, " OR ") + ")"
		case store.OpExists, store.OpNotExists:
		case store.OpPrefix:
			sub += " AND value >= ?"
			args = append(args, c.Value)
			if upper, ok := storekit.UpperBound(c.Value); ok {
				sub += " AND value < ?"
				args = append(args, upper)
			}
		}
		where = append(where, sub+")")
	}
	args = append(args, limit)
	return `SELECT ` + deviceColumns + ` FROM devices d WHERE ` + strings.Join(where, " AND ") +
		` ORDER BY d.id LIMIT ?`, args
}
