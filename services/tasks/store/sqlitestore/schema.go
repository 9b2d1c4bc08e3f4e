package sqlitestore

// migrations are applied in order, each once, recorded in schema_migrations.
// Never edit a released migration: append a new one.
//
// The indexes and what uses them:
//   - the primary key (tenant, id): Create, Get, GetMany, Update;
//   - tasks_idempotency (tenant, idempotency_key), unique where a key is
//     set: Create's idempotency, one record per key even when creates race
//     (the insert is one statement of the one writer);
//   - tasks_created (tenant, create_time DESC, id DESC): List of a tenant
//     newest first, its cursor a range of the index;
//   - tasks_device and tasks_state: List by device or by state, in the
//     same order (ties of the IN list of states are sorted by SQLite);
//   - tasks_due (due_time) where set: Due, oldest first, of running tasks
//     only;
//   - tasks_ended (update_time) where due_time is NULL: DeleteEnded, of
//     ended tasks only.
var migrations = []string{
	// 1: task records.
	`
CREATE TABLE tasks (
	tenant          TEXT    NOT NULL,
	id              TEXT    NOT NULL,
	device_id       TEXT    NOT NULL,
	state           INTEGER NOT NULL,
	kind            TEXT    NOT NULL,
	idempotency_key TEXT    NOT NULL,
	create_time     INTEGER NOT NULL,
	update_time     INTEGER NOT NULL,
	due_time        INTEGER,
	queue_seq       INTEGER NOT NULL,
	version         INTEGER NOT NULL,
	body            BLOB,
	secret          BLOB,
	PRIMARY KEY (tenant, id)
) WITHOUT ROWID;
CREATE UNIQUE INDEX tasks_idempotency ON tasks (tenant, idempotency_key) WHERE idempotency_key <> '';
CREATE INDEX tasks_created ON tasks (tenant, create_time DESC, id DESC);
CREATE INDEX tasks_device  ON tasks (tenant, device_id, create_time DESC, id DESC);
CREATE INDEX tasks_state   ON tasks (tenant, state, create_time DESC, id DESC);
CREATE INDEX tasks_due     ON tasks (due_time) WHERE due_time IS NOT NULL;
CREATE INDEX tasks_ended   ON tasks (update_time) WHERE due_time IS NULL;
`,
}
