package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// recorder is a testing.TB that keeps what the checked code reports.
type recorder struct {
	testing.TB
	errs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// TestCheckLuaKeys: the audit finds a script touching an undeclared key,
// through constants and concatenation, and passes declared ones.
func TestCheckLuaKeys(t *testing.T) {
	src := "package x\n\nimport \"github.com/redis/go-redis/v9\"\n\n" +
		"const prelude = `local function f() return 1 end\n`\n\n" +
		"var good = redis.NewScript(prelude + `\nredis.call('HSET', KEYS[1], 'a', 1)\nfor i = 1, 2 do redis.call('PTTL', KEYS[i]) end\nreturn redis.call( 'TIME' )`)\n\n" +
		"var bad = redis.NewScript(`redis.call('DEL', 'other:' .. ARGV[1])\nredis.pcall('GET', ARGV[2])`)\n"
	path := filepath.Join(t.TempDir(), "scripts.go")
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	r := &recorder{TB: t}
	if n := testenv.CheckLuaKeys(r, path); n != 2 {
		t.Errorf("found %d scripts, want 2", n)
	}
	if len(r.errs) != 2 || !strings.Contains(r.errs[0], "redis.call('DEL'") || !strings.Contains(r.errs[1], "redis.call('GET', ARGV[2])") {
		t.Errorf("reported %q, want the DEL and the GET of undeclared keys", r.errs)
	}
}

// TestSlot: Redis Cluster's hash slots, as the Redis documentation gives
// them, hash tags included.
func TestSlot(t *testing.T) {
	for key, want := range map[string]int{
		"123456789":             0x31C3,
		"somekey":               11058,
		"foo":                   12182,
		"{foo}.bar":             12182,
		"x{foo}y{bar}":          12182,
		"user1000":              testenv.Slot("{user1000}.following"),
		"{user1000}.followers":  testenv.Slot("{user1000}.following"),
		"{user1000}.following}": testenv.Slot("user1000"),
	} {
		if got := testenv.Slot(key); got != want {
			t.Errorf("Slot(%q) = %d, want %d", key, got, want)
		}
	}
	if testenv.Slot("{}foo") == testenv.Slot("") {
		t.Error("an empty hash tag is taken as the tag")
	}
}
