package sqlitestore

// migrations are applied in order, each once, recorded in schema_migrations.
// Never edit a released migration: append a new one.
var migrations = []string{
	// 1: devices, their tags and their parameter trees.
	`
CREATE TABLE devices (
	tenant           TEXT    NOT NULL,
	id               TEXT    NOT NULL,
	manufacturer     TEXT    NOT NULL DEFAULT '',
	oui_raw          TEXT    NOT NULL DEFAULT '',
	oui              TEXT    NOT NULL DEFAULT '',
	product_class    TEXT    NOT NULL DEFAULT '',
	serial_number    TEXT    NOT NULL DEFAULT '',
	software_version TEXT    NOT NULL DEFAULT '',
	hardware_version TEXT    NOT NULL DEFAULT '',
	provisioning_code TEXT   NOT NULL DEFAULT '',
	data_model_root  TEXT    NOT NULL DEFAULT '',
	cr_url           TEXT    NOT NULL DEFAULT '',
	cr_udp_address   TEXT    NOT NULL DEFAULT '',
	cr_jabber_id     TEXT    NOT NULL DEFAULT '',
	-- credentials: NULL username when none were provisioned
	cr_username      TEXT,
	cr_password      TEXT,
	cpe_username     TEXT,
	cpe_password     TEXT,
	last_inform      INTEGER,
	remote_ip        TEXT    NOT NULL DEFAULT '',
	last_events      TEXT    NOT NULL DEFAULT '[]',
	registered       INTEGER NOT NULL,
	last_boot        INTEGER,
	last_bootstrap   INTEGER,
	full_discovery   INTEGER,
	takeover_count   INTEGER NOT NULL DEFAULT 0,
	last_takeover    INTEGER,
	takeover_session TEXT    NOT NULL DEFAULT '',
	updated          INTEGER NOT NULL,
	fencing_token    INTEGER NOT NULL DEFAULT 0,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE INDEX devices_last_inform      ON devices (tenant, last_inform);
CREATE INDEX devices_oui              ON devices (tenant, oui, id);
CREATE INDEX devices_product_class    ON devices (tenant, product_class, id);
CREATE INDEX devices_serial_number    ON devices (tenant, serial_number, id);
CREATE INDEX devices_software_version ON devices (tenant, software_version, id);
CREATE INDEX devices_hardware_version ON devices (tenant, hardware_version, id);

CREATE TABLE device_tags (
	tenant    TEXT NOT NULL,
	device_id TEXT NOT NULL,
	tag       TEXT NOT NULL,
	PRIMARY KEY (tenant, device_id, tag)
) WITHOUT ROWID;
CREATE INDEX device_tags_tag ON device_tags (tenant, tag, device_id);

-- value and type are NULL while only attributes are known; number holds
-- the value of an integer-typed entry (NUMERIC keeps int64 exact) and
-- instant (unix ms) that of a dateTime-typed one, for typed lt/gt; writable
-- and notification are NULL while unknown.
CREATE TABLE parameters (
	tenant       TEXT    NOT NULL,
	device_id    TEXT    NOT NULL,
	path         TEXT    NOT NULL,
	value        TEXT,
	type         TEXT,
	number       NUMERIC,
	instant      INTEGER,
	writable     INTEGER,
	notification INTEGER,
	updated      INTEGER NOT NULL,
	PRIMARY KEY (tenant, device_id, path)
) WITHOUT ROWID;
-- number and instant ride along in the value index so that the string
-- branch of a typed lt/gt ("value < ? AND number IS NULL AND instant IS
-- NULL") is answered from the index without a row lookup per entry.
CREATE INDEX parameters_value  ON parameters (tenant, path, value, number, instant);
CREATE INDEX parameters_number  ON parameters (tenant, path, number) WHERE number IS NOT NULL;
CREATE INDEX parameters_instant ON parameters (tenant, path, instant) WHERE instant IS NOT NULL;
`,
	// 2: entries the last diff reported again by value (see apply.go,
	// "Confirmed entries").
	`
ALTER TABLE devices ADD COLUMN confirmed_paths TEXT NOT NULL DEFAULT '';
ALTER TABLE devices ADD COLUMN confirmed_at INTEGER;
`,
	// 3: passwords sealed at rest (secrets.go): the ID of the key that
	// sealed each password (NULL: in clear, from before), and the key
	// every password was last sealed with.
	`
ALTER TABLE devices ADD COLUMN cr_password_key TEXT;
ALTER TABLE devices ADD COLUMN cpe_password_key TEXT;
CREATE TABLE secrets_state (
	id     INTEGER PRIMARY KEY CHECK (id = 1),
	key_id TEXT NOT NULL
);
`,
	// 4: API tokens (tokens.go).
	`
CREATE TABLE api_tokens (
	id          TEXT    NOT NULL PRIMARY KEY,
	hash        TEXT    NOT NULL,
	name        TEXT    NOT NULL,
	role        INTEGER NOT NULL,
	all_tenants INTEGER NOT NULL,
	tenants     TEXT    NOT NULL,
	creator     TEXT    NOT NULL,
	created     INTEGER NOT NULL,
	expires     INTEGER,
	revoked     INTEGER
) WITHOUT ROWID;
CREATE TABLE api_token_tenants (
	tenant   TEXT NOT NULL,
	token_id TEXT NOT NULL,
	PRIMARY KEY (tenant, token_id)
) WITHOUT ROWID;
`,
	// 5: discovery profiles of product classes (discovery.go): the largest
	// batch answered, every failed batch size, a whole-tree GPN that died.
	`
CREATE TABLE discovery_profiles (
	tenant             TEXT    NOT NULL,
	oui                TEXT    NOT NULL,
	product_class      TEXT    NOT NULL,
	gpv_ok             INTEGER NOT NULL DEFAULT 0,
	subtree_gpn_failed INTEGER NOT NULL DEFAULT 0,
	updated            INTEGER NOT NULL,
	PRIMARY KEY (tenant, oui, product_class)
) WITHOUT ROWID;
CREATE TABLE discovery_failures (
	tenant        TEXT    NOT NULL,
	oui           TEXT    NOT NULL,
	product_class TEXT    NOT NULL,
	size          INTEGER NOT NULL,
	PRIMARY KEY (tenant, oui, product_class, size)
) WITHOUT ROWID;
`,
	// 6: parameter trees (tree.go): one encoded tree per device, the
	// parameters table keeping only the entries of indexed paths; and what
	// the store records of itself (store_meta: "trees" once the rows of
	// earlier versions became trees, "indexed_params" the patterns the
	// rows of parameters follow). syncTrees does the rest in Go.
	`
CREATE TABLE device_trees (
	tenant    TEXT NOT NULL,
	device_id TEXT NOT NULL,
	tree      BLOB NOT NULL,
	PRIMARY KEY (tenant, device_id)
);
CREATE TABLE store_meta (
	key   TEXT NOT NULL PRIMARY KEY,
	value TEXT NOT NULL
) WITHOUT ROWID;
`,
	// 7: connection-request credentials an operator gave that no session
	// set yet (crp_*, the password sealed as cr_password is; crp_time when
	// given, unix ms), and when a CPE last refused credentials.
	`
ALTER TABLE devices ADD COLUMN crp_username TEXT;
ALTER TABLE devices ADD COLUMN crp_password TEXT;
ALTER TABLE devices ADD COLUMN crp_password_key TEXT;
ALTER TABLE devices ADD COLUMN crp_time INTEGER;
ALTER TABLE devices ADD COLUMN cr_refused INTEGER;
`,
	// 8: which preset set the device last converged to
	// (docs/provisioning.md).
	`
ALTER TABLE devices ADD COLUMN presets TEXT NOT NULL DEFAULT '';
`,
	// 9: a device's tree delta (treedelta.go): the patches of the diffs
	// applied since its tree was last written, NULL when none; and the
	// length of the tree as last written (0: none), NULL until a diff
	// writes it (a delta needs it, so the first diff after this
	// migration writes the tree).
	`
ALTER TABLE devices ADD COLUMN tree_delta BLOB;
ALTER TABLE devices ADD COLUMN tree_bytes INTEGER;
`,
}
