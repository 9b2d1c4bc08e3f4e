package sqlitestore

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

const deviceColumns = `d.tenant, d.id, d.manufacturer, d.oui_raw, d.oui, d.product_class, d.serial_number,
	d.software_version, d.hardware_version, d.provisioning_code, d.data_model_root,
	d.cr_url, d.cr_udp_address, d.cr_jabber_id, d.cr_username, d.cr_password, d.cpe_username, d.cpe_password,
	d.last_inform, d.remote_ip, d.last_events, d.registered, d.last_boot, d.last_bootstrap, d.full_discovery,
	d.takeover_count, d.last_takeover, d.updated, d.fencing_token`

func scanDevice(sc interface{ Scan(...any) error }) (store.Device, error) {
	var (
		dev                              store.Device
		lastInform, registered, lastBoot sql.NullInt64
		lastBootstrap, fullDiscovery     sql.NullInt64
		lastTakeover, updated            sql.NullInt64
		crUser, crPass, cpeUser, cpePass sql.NullString
		remoteIP, events                 string
		token, takeovers                 int64
	)
	err := sc.Scan(&dev.Tenant, &dev.ID, &dev.DeviceID.Manufacturer, &dev.DeviceID.OUI, &dev.OUI,
		&dev.DeviceID.ProductClass, &dev.DeviceID.SerialNumber,
		&dev.SoftwareVersion, &dev.HardwareVersion, &dev.ProvisioningCode, &dev.DataModelRoot,
		&dev.ConnectionRequest.URL, &dev.ConnectionRequest.UDPAddress, &dev.ConnectionRequest.JabberID,
		&crUser, &crPass, &cpeUser, &cpePass,
		&lastInform, &remoteIP, &events, &registered, &lastBoot, &lastBootstrap, &fullDiscovery,
		&takeovers, &lastTakeover, &updated, &token)
	if err != nil {
		return store.Device{}, err
	}
	dev.LastInform, dev.Registered, dev.LastBoot = fromMS(lastInform), fromMS(registered), fromMS(lastBoot)
	dev.LastBootstrap, dev.FullDiscovery = fromMS(lastBootstrap), fromMS(fullDiscovery)
	dev.LastTakeover, dev.Updated = fromMS(lastTakeover), fromMS(updated)
	dev.TakeoverCount, dev.FencingToken = uint64(takeovers), uint64(token)
	if crUser.Valid {
		dev.ConnectionRequestCredentials = &store.Credentials{Username: crUser.String, Password: crPass.String}
	}
	if cpeUser.Valid {
		dev.CPECredentials = &store.Credentials{Username: cpeUser.String, Password: cpePass.String}
	}
	if remoteIP != "" {
		if dev.RemoteIP, err = netip.ParseAddr(remoteIP); err != nil {
			return store.Device{}, fmt.Errorf("decode remote IP: %w", err)
		}
	}
	if err := json.Unmarshal([]byte(events), &dev.LastEvents); err != nil {
		return store.Device{}, fmt.Errorf("decode events: %w", err)
	}
	if len(dev.LastEvents) == 0 {
		dev.LastEvents = nil
	}
	return dev, nil
}

// Get implements store.Store.
func (s *Store) Get(ctx context.Context, tenant, id string, opts store.ReadOptions) (store.Device, error) {
	dev, err := func() (store.Device, error) {
		if err := storekit.Key(tenant, id); err != nil {
			return store.Device{}, err
		}
		_, r, err := s.pools()
		if err != nil {
			return store.Device{}, err
		}
		var dev store.Device
		// One read transaction: the device, its tags and its tree come
		// from one snapshot even while a diff is being applied.
		err = inTx(ctx, r, func(tx *sql.Tx) error {
			row := tx.QueryRowContext(ctx, `SELECT `+deviceColumns+` FROM devices d WHERE d.tenant = ? AND d.id = ?`, tenant, id)
			var err error
			if dev, err = scanDevice(row); errors.Is(err, sql.ErrNoRows) {
				return store.ErrNotFound
			} else if err != nil {
				return fmt.Errorf("read device: %w", err)
			}
			devs := []store.Device{dev}
			if err := loadTags(ctx, tx, tenant, devs); err != nil {
				return err
			}
			if opts.WantParams() {
				if err := loadParams(ctx, tx, &devs[0], opts.ParamPrefixes); err != nil {
					return err
				}
			}
			dev = devs[0]
			return nil
		})
		return dev, err
	}()
	if err != nil {
		return store.Device{}, fmt.Errorf("get device %s/%s: %w", tenant, id, err)
	}
	return dev, nil
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

func loadParams(ctx context.Context, tx *sql.Tx, dev *store.Device, prefixes []string) error {
	q := `SELECT path, value, type, writable, notification, updated FROM parameters WHERE tenant = ? AND device_id = ?`
	args := []any{dev.Tenant, dev.ID}
	var ranges []string
	for _, prefix := range prefixes {
		if prefix == "" {
			ranges = nil
			break
		}
		r := `path >= ?`
		args = append(args, prefix)
		if upper, ok := storekit.UpperBound(prefix); ok {
			r += ` AND path < ?`
			args = append(args, upper)
		}
		ranges = append(ranges, "("+r+")")
	}
	if len(ranges) > 0 {
		q += ` AND (` + strings.Join(ranges, " OR ") + `)`
	} else {
		args = args[:2]
	}
	rows, err := tx.QueryContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("read parameters: %w", err)
	}
	defer rows.Close()
	dev.Params = make(map[string]store.Parameter)
	for rows.Next() {
		var (
			path                   string
			value, typ             sql.NullString
			writable, notification sql.NullInt64
			updated                sql.NullInt64
		)
		if err := rows.Scan(&path, &value, &typ, &writable, &notification, &updated); err != nil {
			return fmt.Errorf("read parameters: %w", err)
		}
		p := store.Parameter{Value: value.String, Type: typ.String, HasValue: value.Valid, Updated: fromMS(updated)}
		if writable.Valid {
			p.Writable = store.TriOf(writable.Int64 != 0)
		}
		if notification.Valid {
			p.Notification = store.NotificationOf(int(notification.Int64))
		}
		dev.Params[path] = p
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("read parameters: %w", err)
	}
	return nil
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
	q, args := listQuery(cf, after, limit+1)
	_, r, err := s.pools()
	if err != nil {
		return store.Page{}, err
	}
	var out store.Page
	err = inTx(ctx, r, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, q, args...)
		if err != nil {
			return fmt.Errorf("query devices: %w", err)
		}
		defer rows.Close()
		for rows.Next() {
			dev, err := scanDevice(rows)
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
				if err := loadParams(ctx, tx, &out.Devices[i], opts.ParamPrefixes); err != nil {
					return err
				}
			}
		}
		return nil
	})
	return out, err
}

// listQuery builds the keyset-paginated query for f. Tag and parameter
// conditions are IN (subquery) terms: each subquery is an index range scan
// (device_tags_tag, parameters_value or parameters_number) that yields the
// matching device ids, so a selective condition never scans the devices
// table.
func listQuery(f storekit.Filter, after string, limit int) (string, []any) {
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
