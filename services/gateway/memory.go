package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/authstate"
)

// Adapters of the gateway's ports beyond the gRPC Forwarder. Affinity and
// Leases come from pkg/affinity (Redis for a cluster, memory for one
// process); the guards below keep them in step with the ports.
var (
	_ Affinity = (*affinity.MemoryAffinity)(nil)
	_ Affinity = (*affinity.RedisAffinity)(nil)
	_ Leases   = (*affinity.MemoryLeases)(nil)
	_ Leases   = (*affinity.RedisLeases)(nil)

	_ NonceCounts = (*authstate.Memory)(nil)
	_ NonceCounts = (*authstate.Redis)(nil)
	_ AuthGuard   = (*authstate.Memory)(nil)
	_ AuthGuard   = (*authstate.Redis)(nil)
)

// StaticCredentials is a Credentials held in memory, keyed by tenant and
// device key, for one process and tests.
type StaticCredentials struct {
	mu    sync.RWMutex
	creds map[credKey]DeviceCredentials
}

type credKey struct{ tenant, device string }

var _ Credentials = (*StaticCredentials)(nil)

// NewStaticCredentials returns an empty StaticCredentials.
func NewStaticCredentials() *StaticCredentials {
	return &StaticCredentials{creds: map[credKey]DeviceCredentials{}}
}

// Set records the credentials of a device, which becomes known (registered
// at the zero time unless Register said otherwise).
func (s *StaticCredentials) Set(tenant, deviceKey string, c Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := credKey{tenant, deviceKey}
	d := s.creds[k]
	d.Own, d.Known = &c, true
	s.creds[k] = d
}

// Register records a device without credentials of its own, first seen at
// registered.
func (s *StaticCredentials) Register(tenant, deviceKey string, registered time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := credKey{tenant, deviceKey}
	d := s.creds[k]
	d.Known, d.Registered = true, registered
	s.creds[k] = d
}

// CPECredentials implements Credentials.
func (s *StaticCredentials) CPECredentials(_ context.Context, tenant, deviceKey string) (DeviceCredentials, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := s.creds[credKey{tenant, deviceKey}]
	if d.Own != nil {
		c := *d.Own
		d.Own = &c
	}
	return d, nil
}
