package sqlitestore

import (
	"database/sql"
	"strings"
	"testing"
)

// TestHotStatementsUseKeys checks the query plans of the statements every
// session runs: each must find its rows through a key, never scan a table
// or sort.
func TestHotStatementsUseKeys(t *testing.T) {
	s := startStore(t)
	db, err := sql.Open("sqlite", s.dsn(false))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		readDeviceSQL,
		getDeviceSQL,
		treeSQL,
		updateSQL(1<<colLastInform | 1<<colSoftwareVersion | 1<<colTakeover),
		setParamValueSQL,
		mergeParamsSQL(3),
		`DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path >= ? AND path < ?`,
		`DELETE FROM parameters WHERE tenant = ? AND device_id = ? AND path = ?`,
		`DELETE FROM device_tags WHERE tenant = ? AND device_id = ? AND tag = ?`,
	} {
		rows, err := db.Query("EXPLAIN QUERY PLAN "+q, make([]any, strings.Count(q, "?"))...)
		if err != nil {
			t.Fatalf("explain %q: %v", q, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		rows.Close()
		for _, step := range plan {
			// The VALUES list of the merge is the only thing scanned.
			if strings.Contains(step, "TEMP B-TREE") || strings.HasPrefix(step, "SCAN") && !strings.Contains(step, "VALUES") {
				t.Errorf("plan of %q:\n  %s", strings.Join(strings.Fields(q), " "), strings.Join(plan, "\n  "))
				break
			}
		}
	}
}
