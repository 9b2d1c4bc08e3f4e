package redisconn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string // substring of the error; "" for none
	}{
		{"single", Config{Addrs: []string{"127.0.0.1:6379"}}, ""},
		{"single explicit", Config{Mode: ModeSingle, Addrs: []string{"redis:6379"}, DB: 3}, ""},
		{"no address", Config{}, "no address"},
		{"not host:port", Config{Addrs: []string{"redis"}}, `"redis" is not host:port`},
		{"empty port", Config{Addrs: []string{"redis:"}}, "not host:port"},
		{"single with several", Config{Addrs: []string{"a:1", "b:2"}}, "2 addresses with redis.mode=single"},
		{"single with master", Config{Addrs: []string{"a:1"}, MasterName: "m"}, "sentinel-master is for"},
		{"negative db", Config{Addrs: []string{"a:1"}, DB: -1}, "must not be negative"},
		{"sentinel", Config{Mode: ModeSentinel, Addrs: []string{"a:26379", "b:26379"}, MasterName: "m", DB: 2}, ""},
		{"sentinel without master", Config{Mode: ModeSentinel, Addrs: []string{"a:26379"}}, "sentinel-master is required"},
		{"cluster", Config{Mode: ModeCluster, Addrs: []string{"a:1", "b:2", "c:3"}}, ""},
		{"cluster db", Config{Mode: ModeCluster, Addrs: []string{"a:1"}, DB: 1}, "redis.db must be 0"},
		{"cluster master", Config{Mode: ModeCluster, Addrs: []string{"a:1"}, MasterName: "m"}, "sentinel-master is for"},
		{"unknown mode", Config{Mode: "ring", Addrs: []string{"a:1"}}, `got "ring"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.cfg.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tc.want)
			}
			c, err := New(tc.cfg)
			if (err == nil) != (tc.want == "") {
				t.Fatalf("New: %v", err)
			}
			if c != nil {
				_ = c.Close()
			}
		})
	}
}

func TestNewKinds(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		kind string
	}{
		{Config{Addrs: []string{"127.0.0.1:1"}}, "*redis.Client"},
		{Config{Mode: ModeSentinel, Addrs: []string{"127.0.0.1:1"}, MasterName: "m"}, "*redis.Client"},
		{Config{Mode: ModeCluster, Addrs: []string{"127.0.0.1:1"}}, "*redis.ClusterClient"},
	} {
		c, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		var kind string
		switch c.(type) {
		case *redis.Client:
			kind = "*redis.Client"
		case *redis.ClusterClient:
			kind = "*redis.ClusterClient"
		}
		if kind != tc.kind {
			t.Errorf("%s: %T, want %s", tc.cfg.Describe(), c, tc.kind)
		}
		_ = c.Close()
	}
}

func TestParseAddrs(t *testing.T) {
	got := ParseAddrs(" a:1, ,b:2,")
	if strings.Join(got, "|") != "a:1|b:2" {
		t.Fatalf("ParseAddrs: %q", got)
	}
	if ParseAddrs("") != nil {
		t.Fatal("ParseAddrs of nothing is not empty")
	}
}

func TestNeedsReload(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{nil, false},
		{redis.Nil, false},
		{context.Canceled, false},
		{errors.New("dial tcp 127.0.0.1:1: connect: connection refused"), true},
		{context.DeadlineExceeded, true},
		{proto("CLUSTERDOWN The cluster is down"), true},
		{proto("TRYAGAIN Multiple keys request during rehashing of slot"), true},
		{proto("WRONGTYPE Operation against a key holding the wrong kind of value"), false},
		{proto("NOSCRIPT No matching script"), false},
	} {
		if got := needsReload(tc.err); got != tc.want {
			t.Errorf("needsReload(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// proto is an error as Redis answers it.
type proto string

func (e proto) Error() string { return string(e) }
func (proto) RedisError()     {}
