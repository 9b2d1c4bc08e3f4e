package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRedisFlagsRefused: -redis.* settings that cannot work stop the
// process at start with exit 1 and a message naming the flag, before any
// connection is tried.
func TestRedisFlagsRefused(t *testing.T) {
	base := []string{"-server.http-addr=127.0.0.1:0", "-server.internal-grpc-addr=127.0.0.1:0", "-client.inventory-addr=127.0.0.1:1"}
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"-redis.addr=127.0.0.1:1", "-redis.mode=ring"}, `redis.mode must be single, sentinel or cluster, got "ring"`},
		{[]string{"-redis.addr=127.0.0.1:1,127.0.0.1:2"}, "2 addresses with redis.mode=single"},
		{[]string{"-redis.addr=127.0.0.1:1", "-redis.mode=sentinel"}, "redis.sentinel-master is required"},
		{[]string{"-redis.addr=127.0.0.1:1", "-redis.mode=cluster", "-redis.db=2"}, "redis.db must be 0 with redis.mode=cluster"},
		{[]string{"-redis.addr=127.0.0.1:1", "-redis.prefix=fleet{acs}"}, "redis.prefix must not contain '{' or '}'"},
		{[]string{"-redis.addr=redis"}, `"redis" is not host:port`},
	} {
		var out, errb bytes.Buffer
		args := append(append(append([]string{}, base...), tc.flags...), "gateway")
		if code := run(context.Background(), args, &out, &errb, noEnv); code != 1 {
			t.Errorf("%v: exit %d, want 1; stderr %q", tc.flags, code, errb.String())
			continue
		}
		if !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: stderr %q does not say %q", tc.flags, errb.String(), tc.want)
		}
	}
}
