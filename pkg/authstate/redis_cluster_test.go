package authstate_test

import (
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/authstate"
	"github.com/fleetacs/fleetacs/pkg/authstate/authstatetest"
	"github.com/fleetacs/fleetacs/pkg/redisconn"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// TestRedisClusterConformance runs the store's contract suite on a real
// Redis Cluster of three masters, through the production client: the
// pipelines of Check and Fail span slots (the client splits them by node)
// and every script touches one key.
func TestRedisClusterConformance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a six-node Redis Cluster")
	}
	rc := testenv.RedisCluster(t)
	client, err := redisconn.New(redisconn.Config{Mode: redisconn.ModeCluster, Addrs: rc.Addrs()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	authstatetest.Run(t, func(t *testing.T, now func() time.Time) authstate.Store {
		return authstate.NewRedis(client, "fleetacs:"+testenv.UniqueName(t)+":", now)
	})
}

// TestRedisScriptsDeclareKeys: no Lua script touches a key it does not
// declare in KEYS.
func TestRedisScriptsDeclareKeys(t *testing.T) {
	if n := testenv.CheckLuaKeys(t, "redis.go"); n != 2 {
		t.Errorf("the audit read %d scripts in redis.go, want 2 (advance, fail): extend it", n)
	}
}
