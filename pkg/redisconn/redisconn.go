// Package redisconn makes the one Redis client a FleetACS process uses, for
// the three deployments it supports (docs/operations.md, "Clustered
// dependencies"):
//
//   - single: one Redis server (or a managed endpoint that fronts one);
//   - sentinel: a master and its replicas watched by Redis Sentinel; the
//     client asks the sentinels for the current master and follows its
//     failovers;
//   - cluster: Redis Cluster; the client learns the slot map from the seed
//     nodes and follows MOVED and ASK redirections and failovers.
//
// Every caller (pkg/affinity, pkg/authstate) takes a redis.UniversalClient
// and keeps every multi-key script and transaction of one device in one
// hash slot, so the same code runs on all three.
package redisconn

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Modes.
const (
	ModeSingle   = "single"
	ModeSentinel = "sentinel"
	ModeCluster  = "cluster"
)

// Config says how to reach Redis.
type Config struct {
	// Mode is ModeSingle, ModeSentinel or ModeCluster ("" is ModeSingle).
	Mode string
	// Addrs are host:port: the server (single, exactly one), the sentinels
	// (sentinel) or seed nodes of the cluster (cluster; any live one is
	// enough to learn the others).
	Addrs []string
	// MasterName is the name the sentinels monitor the master under
	// (sentinel only).
	MasterName string
	// DB is the database number; Redis Cluster has only database 0.
	DB int
	// Username and Password authenticate to the Redis servers (ACL user,
	// or the password of requirepass when Username is empty).
	Username, Password string
	// SentinelUsername and SentinelPassword authenticate to the sentinels
	// when they require it (sentinel only).
	SentinelUsername, SentinelPassword string
	// DialTimeout, ReadTimeout and WriteTimeout bound every network
	// operation (defaults 2s each).
	DialTimeout, ReadTimeout, WriteTimeout time.Duration
	// PoolSize is the connections kept per server (default 10 per CPU).
	PoolSize int
	// Metrics, if set, records every command's latency and errors
	// (telemetry.ClientMetrics, system "redis").
	Metrics *telemetry.ClientMetrics
}

// ParseAddrs splits a comma-separated list of host:port, dropping blanks.
func ParseAddrs(s string) []string {
	var out []string
	for _, a := range strings.Split(s, ",") {
		if a = strings.TrimSpace(a); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// Validate reports settings that cannot work, naming the flags of
// cmd/fleetacs (-redis.*).
func (c *Config) Validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("redis.addr: no address"))
	}
	for _, a := range c.Addrs {
		if i := strings.LastIndexByte(a, ':'); i <= 0 || i == len(a)-1 {
			errs = append(errs, fmt.Errorf("redis.addr: %q is not host:port", a))
		}
	}
	if c.DB < 0 {
		errs = append(errs, fmt.Errorf("redis.db must not be negative, got %d", c.DB))
	}
	switch c.Mode {
	case "", ModeSingle:
		if len(c.Addrs) > 1 {
			errs = append(errs, fmt.Errorf("redis.addr: %d addresses with redis.mode=single; list several only with redis.mode=sentinel or cluster", len(c.Addrs)))
		}
		if c.MasterName != "" {
			errs = append(errs, errors.New("redis.sentinel-master is for redis.mode=sentinel"))
		}
	case ModeSentinel:
		if c.MasterName == "" {
			errs = append(errs, errors.New("redis.sentinel-master is required with redis.mode=sentinel"))
		}
	case ModeCluster:
		if c.DB != 0 {
			errs = append(errs, fmt.Errorf("redis.db must be 0 with redis.mode=cluster (Redis Cluster has one database), got %d", c.DB))
		}
		if c.MasterName != "" {
			errs = append(errs, errors.New("redis.sentinel-master is for redis.mode=sentinel"))
		}
	default:
		errs = append(errs, fmt.Errorf("redis.mode must be single, sentinel or cluster, got %q", c.Mode))
	}
	return errors.Join(errs...)
}

// New returns the client Config describes. It does no I/O: the first
// command connects.
func New(c Config) (redis.UniversalClient, error) {
	client, err := newClient(c)
	if err != nil {
		return nil, err
	}
	if c.Metrics != nil {
		client.AddHook(metricsHook{c.Metrics})
	}
	return client, nil
}

func newClient(c Config) (redis.UniversalClient, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	dial, read, write := c.DialTimeout, c.ReadTimeout, c.WriteTimeout
	if dial <= 0 {
		dial = 2 * time.Second
	}
	if read <= 0 {
		read = 2 * time.Second
	}
	if write <= 0 {
		write = 2 * time.Second
	}
	// RESP2: FleetACS uses no RESP3 feature, and RESP3 makes the client
	// look for push notifications around every reply. DisableIdentity:
	// no CLIENT SETINFO, which managed servers may refuse.
	const protocol = 2
	switch c.Mode {
	case ModeSentinel:
		return redis.NewFailoverClient(&redis.FailoverOptions{
			MasterName:       c.MasterName,
			SentinelAddrs:    c.Addrs,
			SentinelUsername: c.SentinelUsername,
			SentinelPassword: c.SentinelPassword,
			Username:         c.Username,
			Password:         c.Password,
			DB:               c.DB,
			DialTimeout:      dial,
			ReadTimeout:      read,
			WriteTimeout:     write,
			PoolSize:         c.PoolSize,
			Protocol:         protocol,
			DisableIdentity:  true,
		}), nil
	case ModeCluster:
		cc := redis.NewClusterClient(&redis.ClusterOptions{
			Addrs:        c.Addrs,
			Username:     c.Username,
			Password:     c.Password,
			DialTimeout:  dial,
			ReadTimeout:  read,
			WriteTimeout: write,
			PoolSize:     c.PoolSize,
			Protocol:     protocol,
			// A failover moves slots: follow a few more redirections
			// than the default (3) while the slot map settles.
			MaxRedirects: 8,
			// The slot map is refreshed at least this often, and at once
			// after a failure (reloadOnFailure).
			ClusterStateReloadInterval: 5 * time.Second,
			DisableIdentity:            true,
		})
		cc.AddHook(reloadOnFailure{cc})
		return cc, nil
	default:
		return redis.NewClient(&redis.Options{
			Addr:            c.Addrs[0],
			Username:        c.Username,
			Password:        c.Password,
			DB:              c.DB,
			DialTimeout:     dial,
			ReadTimeout:     read,
			WriteTimeout:    write,
			PoolSize:        c.PoolSize,
			Protocol:        protocol,
			DisableIdentity: true,
		}), nil
	}
}

// Describe names the deployment for messages: "redis 10.0.0.1:6379",
// "redis sentinel master mymaster via a:26379,b:26379", ... No secrets.
func (c *Config) Describe() string {
	addrs := strings.Join(c.Addrs, ",")
	switch c.Mode {
	case ModeSentinel:
		return fmt.Sprintf("Redis master %q via sentinels %s", c.MasterName, addrs)
	case ModeCluster:
		return "Redis Cluster via " + addrs
	default:
		return "Redis at " + addrs
	}
}

// reloadOnFailure refreshes a cluster client's slot map when a command
// fails other than with Redis's own answer: a master that died keeps its
// slots in the client's map (go-redis retries the dead address until the
// next periodic reload) although its replica took them over; CLUSTERDOWN
// and TRYAGAIN, said while a failover settles, call for a reload too. The
// reload is lazy: concurrent failures cause one.
type reloadOnFailure struct{ c *redis.ClusterClient }

func (h reloadOnFailure) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h reloadOnFailure) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(ctx, err)
		return err
	}
}

func (h reloadOnFailure) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(ctx, err)
		for _, c := range cmds {
			h.check(ctx, c.Err())
		}
		return err
	}
}

func (h reloadOnFailure) check(ctx context.Context, err error) {
	if needsReload(err) {
		h.c.ReloadState(ctx)
	}
}

// needsReload tells whether err suggests the slot map is stale.
func needsReload(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) || errors.Is(err, context.Canceled) {
		return false
	}
	var rerr redis.Error
	if errors.As(err, &rerr) {
		return redis.HasErrorPrefix(err, "CLUSTERDOWN") || redis.HasErrorPrefix(err, "TRYAGAIN") || redis.HasErrorPrefix(err, "MASTERDOWN")
	}
	return true
}

// metricsHook records each command, and each pipeline or transaction as
// one "pipeline" call. Redis's nil reply (a missing key) is an answer, not
// an error.
type metricsHook struct{ m *telemetry.ClientMetrics }

func (h metricsHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h metricsHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmd)
		h.m.Since(ctx, telemetry.SystemRedis, cmd.Name(), start, metricErr(err))
		return err
	}
}

func (h metricsHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		start := time.Now()
		err := next(ctx, cmds)
		h.m.Since(ctx, telemetry.SystemRedis, "pipeline", start, metricErr(err))
		return err
	}
}

func metricErr(err error) error {
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}
