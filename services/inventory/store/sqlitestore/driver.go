package sqlitestore

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"strings"
)

// The writer talks to its connection through database/sql/driver directly,
// inside sql.Conn.Raw for the writer's whole life: database/sql would copy
// every argument list into a fresh slice and wrap every result and row set
// in objects of its own, which for the dozen small statements of a diff cost
// about a tenth of the diff's CPU and most of its allocations. The
// statements are the driver's prepared statements, reset and reused.

// rawConn is the writer's driver connection. Only the writer goroutine uses
// it, and only inside sql.Conn.Raw.
type rawConn struct {
	// ctx has no Done (see writer.run).
	ctx context.Context
	c   driver.ConnPrepareContext
	// nv is reused for the arguments of every statement.
	nv []driver.NamedValue
	// prepared are all statements, closed with the connection.
	prepared []driver.Stmt
}

// rawStmt is what the writer needs of a driver statement.
type rawStmt interface {
	driver.Stmt
	driver.StmtExecContext
	driver.StmtQueryContext
}

func (rc *rawConn) prepare(query string) (rawStmt, error) {
	s, err := rc.c.PrepareContext(rc.ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare %q: %w", strings.Join(strings.Fields(query), " "), err)
	}
	rs, ok := s.(rawStmt)
	if !ok {
		_ = s.Close()
		return nil, fmt.Errorf("prepare %q: driver statement %T lacks context methods", query, s)
	}
	return rs, nil
}

// keep prepares a statement that lives as long as the connection.
func (rc *rawConn) keep(dst *rawStmt, query string) error {
	s, err := rc.prepare(query)
	if err != nil {
		return err
	}
	*dst = s
	rc.prepared = append(rc.prepared, s)
	return nil
}

// args fills rc.nv. Every value must be a driver.Value the driver binds:
// nil, int64, float64, bool, string ([]byte and time.Time are unused).
func (rc *rawConn) args(args []any) []driver.NamedValue {
	nv := rc.nv[:0]
	for i, a := range args {
		nv = append(nv, driver.NamedValue{Ordinal: i + 1, Value: a})
	}
	rc.nv = nv
	return nv
}

// exec runs s and returns the number of rows it changed.
func (rc *rawConn) exec(s rawStmt, args ...any) (int64, error) {
	res, err := s.ExecContext(rc.ctx, rc.args(args))
	clear(rc.nv)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// query runs s; the caller closes the rows.
func (rc *rawConn) query(s rawStmt, args ...any) (driver.Rows, error) {
	rows, err := s.QueryContext(rc.ctx, rc.args(args))
	clear(rc.nv)
	return rows, err
}

// queryRow runs s and reads its first row into dest; it reports false when
// there is none.
func (rc *rawConn) queryRow(s rawStmt, dest []driver.Value, args ...any) (bool, error) {
	rows, err := rc.query(s, args...)
	if err != nil {
		return false, err
	}
	err = rows.Next(dest)
	if errors.Is(err, io.EOF) {
		return false, rows.Close()
	}
	return err == nil, errors.Join(err, rows.Close())
}

// text and integer read a column of a driver row: TEXT arrives as string
// (or []byte), INTEGER as int64, NULL as nil.
func text(v driver.Value) (string, error) {
	switch x := v.(type) {
	case string:
		return x, nil
	case []byte:
		return string(x), nil
	case nil:
		return "", nil
	}
	return "", fmt.Errorf("column holds %T, want text", v)
}

func integer(v driver.Value) (int64, error) {
	switch x := v.(type) {
	case int64:
		return x, nil
	case nil:
		return 0, nil
	}
	return 0, fmt.Errorf("column holds %T, want an integer", v)
}

// blob reads a BLOB column; the bytes belong to the caller until the next
// statement runs on the connection.
func blob(v driver.Value) ([]byte, error) {
	switch x := v.(type) {
	case []byte:
		return x, nil
	case string:
		return []byte(x), nil
	case nil:
		return nil, nil
	}
	return nil, fmt.Errorf("column holds %T, want a blob", v)
}

func (rc *rawConn) close() error {
	var errs []error
	for _, s := range rc.prepared {
		errs = append(errs, s.Close())
	}
	rc.prepared = nil
	return errors.Join(errs...)
}
