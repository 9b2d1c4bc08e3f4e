package telemetry

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"time"
)

// OpenSQL opens a database like sql.Open(driverName, dsn), recording the
// latency and errors of its calls into c as system "sqlite" (the embedded
// stores' database): "query" and "exec" for statements (until the driver
// returns; reading rows is the caller's time), "begin" and "commit" for
// transactions. The wrapper forwards the driver interfaces database/sql
// uses; a driver connection reached through sql.Conn.Raw is the wrapper,
// which offers ConnPrepareContext and statements with the context
// methods. With a nil c it is sql.Open.
func OpenSQL(driverName, dsn string, c *ClientMetrics) (*sql.DB, error) {
	if c == nil {
		return sql.Open(driverName, dsn)
	}
	db, err := sql.Open(driverName, dsn)
	if err != nil {
		return nil, err
	}
	d := db.Driver()
	_ = db.Close() // no connection was opened
	var inner driver.Connector = dsnConnector{d, dsn}
	if dc, ok := d.(driver.DriverContext); ok {
		if inner, err = dc.OpenConnector(dsn); err != nil {
			return nil, err
		}
	}
	return sql.OpenDB(sqlConnector{inner, c}), nil
}

type dsnConnector struct {
	d   driver.Driver
	dsn string
}

func (c dsnConnector) Connect(context.Context) (driver.Conn, error) { return c.d.Open(c.dsn) }
func (c dsnConnector) Driver() driver.Driver                        { return c.d }

type sqlConnector struct {
	inner driver.Connector
	m     *ClientMetrics
}

func (c sqlConnector) Connect(ctx context.Context) (driver.Conn, error) {
	conn, err := c.inner.Connect(ctx)
	if err != nil {
		return nil, err
	}
	return &sqlConn{Conn: conn, m: c.m}, nil
}

func (c sqlConnector) Driver() driver.Driver { return c.inner.Driver() }

// sqlErr is err as a metric error: the driver's request to fall back, or
// a failure because the caller canceled, is none.
func sqlErr(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, driver.ErrSkip) || errors.Is(ctx.Err(), context.Canceled) {
		return nil
	}
	return err
}

type sqlConn struct {
	driver.Conn
	m *ClientMetrics
}

var (
	_ driver.ConnPrepareContext = (*sqlConn)(nil)
	_ driver.ConnBeginTx        = (*sqlConn)(nil)
	_ driver.ExecerContext      = (*sqlConn)(nil)
	_ driver.QueryerContext     = (*sqlConn)(nil)
	_ driver.Pinger             = (*sqlConn)(nil)
	_ driver.SessionResetter    = (*sqlConn)(nil)
	_ driver.Validator          = (*sqlConn)(nil)
)

func (c *sqlConn) Prepare(query string) (driver.Stmt, error) {
	return c.PrepareContext(context.Background(), query)
}

func (c *sqlConn) PrepareContext(ctx context.Context, query string) (driver.Stmt, error) {
	var s driver.Stmt
	var err error
	if pc, ok := c.Conn.(driver.ConnPrepareContext); ok {
		s, err = pc.PrepareContext(ctx, query)
	} else {
		s, err = c.Conn.Prepare(query)
	}
	if err != nil {
		return nil, err
	}
	return &sqlStmt{Stmt: s, m: c.m}, nil
}

func (c *sqlConn) BeginTx(ctx context.Context, opts driver.TxOptions) (driver.Tx, error) {
	start := time.Now()
	var tx driver.Tx
	var err error
	if bc, ok := c.Conn.(driver.ConnBeginTx); ok {
		tx, err = bc.BeginTx(ctx, opts)
	} else {
		tx, err = c.Conn.Begin() //nolint:staticcheck // the driver has nothing else
	}
	c.m.Since(ctx, SystemSQLite, "begin", start, sqlErr(ctx, err))
	if err != nil {
		return nil, err
	}
	return sqlTx{tx, c.m}, nil
}

func (c *sqlConn) Begin() (driver.Tx, error) {
	return c.BeginTx(context.Background(), driver.TxOptions{})
}

func (c *sqlConn) ExecContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Result, error) {
	ec, ok := c.Conn.(driver.ExecerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	start := time.Now()
	r, err := ec.ExecContext(ctx, query, args)
	c.m.Since(ctx, SystemSQLite, "exec", start, sqlErr(ctx, err))
	return r, err
}

func (c *sqlConn) QueryContext(ctx context.Context, query string, args []driver.NamedValue) (driver.Rows, error) {
	qc, ok := c.Conn.(driver.QueryerContext)
	if !ok {
		return nil, driver.ErrSkip
	}
	start := time.Now()
	r, err := qc.QueryContext(ctx, query, args)
	c.m.Since(ctx, SystemSQLite, "query", start, sqlErr(ctx, err))
	return r, err
}

func (c *sqlConn) Ping(ctx context.Context) error {
	if p, ok := c.Conn.(driver.Pinger); ok {
		return p.Ping(ctx)
	}
	return nil
}

func (c *sqlConn) ResetSession(ctx context.Context) error {
	if r, ok := c.Conn.(driver.SessionResetter); ok {
		return r.ResetSession(ctx)
	}
	return nil
}

func (c *sqlConn) IsValid() bool {
	if v, ok := c.Conn.(driver.Validator); ok {
		return v.IsValid()
	}
	return true
}

type sqlTx struct {
	driver.Tx
	m *ClientMetrics
}

func (t sqlTx) Commit() error {
	start := time.Now()
	err := t.Tx.Commit()
	t.m.Since(context.Background(), SystemSQLite, "commit", start, err)
	return err
}

type sqlStmt struct {
	driver.Stmt
	m *ClientMetrics
}

var (
	_ driver.StmtExecContext  = (*sqlStmt)(nil)
	_ driver.StmtQueryContext = (*sqlStmt)(nil)
)

func (s *sqlStmt) ExecContext(ctx context.Context, args []driver.NamedValue) (driver.Result, error) {
	start := time.Now()
	var r driver.Result
	var err error
	if ec, ok := s.Stmt.(driver.StmtExecContext); ok {
		r, err = ec.ExecContext(ctx, args)
	} else {
		r, err = s.Stmt.Exec(values(args)) //nolint:staticcheck // the driver has nothing else
	}
	s.m.Since(ctx, SystemSQLite, "exec", start, sqlErr(ctx, err))
	return r, err
}

func (s *sqlStmt) QueryContext(ctx context.Context, args []driver.NamedValue) (driver.Rows, error) {
	start := time.Now()
	var r driver.Rows
	var err error
	if qc, ok := s.Stmt.(driver.StmtQueryContext); ok {
		r, err = qc.QueryContext(ctx, args)
	} else {
		r, err = s.Stmt.Query(values(args)) //nolint:staticcheck // the driver has nothing else
	}
	s.m.Since(ctx, SystemSQLite, "query", start, sqlErr(ctx, err))
	return r, err
}

func (s *sqlStmt) Exec(args []driver.Value) (driver.Result, error) {
	return s.ExecContext(context.Background(), named(args))
}

func (s *sqlStmt) Query(args []driver.Value) (driver.Rows, error) {
	return s.QueryContext(context.Background(), named(args))
}

func values(args []driver.NamedValue) []driver.Value {
	out := make([]driver.Value, len(args))
	for i, a := range args {
		out[i] = a.Value
	}
	return out
}

func named(args []driver.Value) []driver.NamedValue {
	out := make([]driver.NamedValue, len(args))
	for i, a := range args {
		out[i] = driver.NamedValue{Ordinal: i + 1, Value: a}
	}
	return out
}
