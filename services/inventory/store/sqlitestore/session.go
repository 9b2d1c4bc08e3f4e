package sqlitestore

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
	"github.com/fleetacs/fleetacs/services/inventory/internal/storekit"
	"github.com/fleetacs/fleetacs/services/inventory/store"
)

// Session states.
//
// Every CWMP session starts with SessionState, and a fleet's sessions come
// back to the same devices. A read of the row through a reader connection
// cost about as much as the rest of a periodic session's inventory work:
// in WAL mode each commit of the writer empties the readers' page caches,
// so the read goes to the file. The writer, though, already knows the
// state: it read the row to check the fencing token and applied the diff.
// It keeps the state each committed diff leaves in sessionCache, and
// SessionState answers from there, falling back to the database for the
// devices the cache does not hold (after a restart, or evicted). The state
// is the whole device row a diff needs (storedDevice), so the writer reads
// the row of the device's next diff from there too (readDevice): reading
// it from the database cost about a third of the store's CPU per periodic
// diff (BENCHMARKS.md). Within a transaction, a device some op has
// written already (a diff, a tag change, new credentials: writer.touched)
// is read from the database, since the cache learns of the write only
// at the commit.
//
// The cache is exact because this store's writer is the only writer of the
// database file (one process per file, as the embedded default runs): the
// writer puts a state only after its transaction committed and before the
// caller of the diff hears back, so a session that starts after the
// previous one's diff returned reads that diff's result. Readers never put
// what they read, so a read racing a commit cannot leave an older state
// behind.

// sessionState is a cached store.SessionState: the device row as the
// last committed diff left it (storedDevice, which holds the session
// state's columns; times in unix ms, 0: none), which the writer also reads
// instead of the database (readDevice), and the digest of what that diff
// confirmed.
type sessionState struct {
	storedDevice
	// confirmed is the digest of the entries the device's last diff
	// confirmed (confirmDigest), when it confirmed any: a diff confirming
	// the same values need not touch their rows at all.
	confirmed    [sha256.Size]byte
	hasConfirmed bool
}

// sessionCache maps tenant and device id to the device's state.
type sessionCache struct {
	mu  sync.RWMutex
	m   map[sessionKey]sessionState
	max int
}

type sessionKey struct{ tenant, id string }

func newSessionCache(max int) *sessionCache {
	return &sessionCache{m: make(map[sessionKey]sessionState), max: max}
}

func (c *sessionCache) get(tenant, id string) (sessionState, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	st, ok := c.m[sessionKey{tenant, id}]
	return st, ok
}

// put stores st, evicting an arbitrary entry when the cache is full.
func (c *sessionCache) put(tenant, id string, st sessionState) {
	if c.max <= 0 {
		return
	}
	k := sessionKey{tenant, id}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; !ok && len(c.m) >= c.max {
		for old := range c.m {
			delete(c.m, old)
			break
		}
	}
	c.m[k] = st
}

func (c *sessionCache) delete(tenant, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, sessionKey{tenant, id})
}

// public converts a state of device (tenant, id), opening its password:
// the cache keeps it sealed, as stored, so that opening costs only the
// sessions that read it.
func (st sessionState) public(keys *secretbox.Keyring, tenant, id string) (store.SessionState, error) {
	out := store.SessionState{
		DataModelRoot:      st.root,
		FullDiscovery:      fromMS(sql.NullInt64{Int64: st.fullDiscovery, Valid: st.fullDiscovery != 0}),
		FencingToken:       uint64(st.token),
		PresetsFingerprint: st.presets,
		Tags:               slices.Clone(st.tags),
	}
	if st.crUser != nil {
		c, err := openStored(keys, tenant, id, storekit.FieldConnectionRequest, *st.crUser, st.crPass, st.crKey)
		if err != nil {
			return store.SessionState{}, err
		}
		out.ConnectionRequestCredentials = c
	}
	if st.crpUser != nil {
		c, err := openStored(keys, tenant, id, storekit.FieldConnectionRequestPending, *st.crpUser, st.crpPass, st.crpKey)
		if err != nil {
			return store.SessionState{}, err
		}
		out.PendingConnectionRequestCredentials = c
		out.PendingConnectionRequestTime = fromMS(sql.NullInt64{Int64: st.crpTime, Valid: st.crpTime != 0})
	}
	out.ConnectionRequestRefused = fromMS(sql.NullInt64{Int64: st.crRefused, Valid: st.crRefused != 0})
	return out, nil
}

// sessionStateSQL reads a sessionState from the database.
const sessionStateSQL = `SELECT data_model_root, full_discovery, fencing_token, cr_username, cr_password, cr_password_key,
	crp_username, crp_password, crp_password_key, crp_time, cr_refused, presets, ` + tagsColumn + `
	FROM devices d WHERE d.tenant = ? AND d.id = ?`

// SessionState implements store.Store.
func (s *Store) SessionState(ctx context.Context, tenant, id string) (store.SessionState, error) {
	out, err := s.sessionState(ctx, tenant, id)
	var pub store.SessionState
	if err == nil {
		pub, err = out.public(s.keys, tenant, id)
	}
	if err != nil {
		return store.SessionState{}, fmt.Errorf("get session state of device %s/%s: %w", tenant, id, err)
	}
	return pub, nil
}

func (s *Store) sessionState(ctx context.Context, tenant, id string) (sessionState, error) {
	if err := storekit.Key(tenant, id); err != nil {
		return sessionState{}, err
	}
	st, err := s.state()
	if err != nil {
		return sessionState{}, err
	}
	if err := ctx.Err(); err != nil {
		return sessionState{}, err
	}
	if cached, ok := st.sessions.get(tenant, id); ok {
		return cached, nil
	}
	var (
		out            sessionState
		full           sql.NullInt64
		crUser, crPass sql.NullString
		crKey          sql.NullString
		crpUser        sql.NullString
		crpPass        sql.NullString
		crpKey         sql.NullString
		crpTime        sql.NullInt64
		crRefused      sql.NullInt64
		tags           sql.NullString
	)
	// A primary-key lookup: not made cancellable, see get.
	err = st.rs.session.QueryRowContext(context.WithoutCancel(ctx), tenant, id).Scan(&out.root, &full, &out.token, &crUser, &crPass, &crKey,
		&crpUser, &crpPass, &crpKey, &crpTime, &crRefused, &out.presets, &tags)
	if errors.Is(err, sql.ErrNoRows) {
		return sessionState{}, store.ErrNotFound
	}
	if err != nil {
		return sessionState{}, fmt.Errorf("read device: %w", err)
	}
	out.fullDiscovery = full.Int64
	if crUser.Valid {
		out.crUser, out.crPass, out.crKey = &crUser.String, crPass.String, crKey.String
	}
	if crpUser.Valid {
		out.crpUser, out.crpPass, out.crpKey = &crpUser.String, crpPass.String, crpKey.String
	}
	out.crpTime, out.crRefused = crpTime.Int64, crRefused.Int64
	out.tags = splitTags(tags.String)
	return out, nil
}

// splitTags reads tagsColumn: sorted tags, nil when none.
func splitTags(s string) []string {
	if s == "" {
		return nil
	}
	tags := strings.Split(s, " ")
	slices.Sort(tags)
	return tags
}

// confirmDigest hashes the paths, types and values of confirmed entries.
func confirmDigest(buf *[]byte, confirm []storekit.Update) [sha256.Size]byte {
	b := (*buf)[:0]
	for i := range confirm {
		u := &confirm[i]
		b = append(b, u.Path...)
		b = append(b, 0)
		b = append(b, u.Type...)
		b = append(b, 0)
		b = strconv.AppendInt(b, int64(len(u.Value)), 10)
		b = append(b, 0)
		b = append(b, u.Value...)
	}
	*buf = b
	return sha256.Sum256(b)
}
