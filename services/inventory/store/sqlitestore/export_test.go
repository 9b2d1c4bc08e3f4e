package sqlitestore

import "testing"

// VerifyRowCache makes every store of the test compare each row the
// session cache gives the writer with the database's (verifyRowCache),
// until the test ends.
func VerifyRowCache(t testing.TB) {
	verifyRowCache.Store(true)
	t.Cleanup(func() { verifyRowCache.Store(false) })
}
