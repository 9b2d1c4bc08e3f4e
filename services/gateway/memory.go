package gateway

import (
	"context"
	"sync"

	"github.com/fleetacs/fleetacs/pkg/affinity"
)

// Adapters of the gateway's ports beyond the gRPC Forwarder. Affinity and
// Leases come from pkg/affinity (Redis for a cluster, memory for one
// process); the guards below keep them in step with the ports.
var (
	_ Affinity = (*affinity.MemoryAffinity)(nil)
	_ Affinity = (*affinity.RedisAffinity)(nil)
	_ Leases   = (*affinity.MemoryLeases)(nil)
	_ Leases   = (*affinity.RedisLeases)(nil)
)

// StaticCredentials is a Credentials held in memory, keyed by tenant and
// device key, for one process and tests.
type StaticCredentials struct {
	mu    sync.RWMutex
	creds map[credKey]Credential
}

type credKey struct{ tenant, device string }

var _ Credentials = (*StaticCredentials)(nil)

// NewStaticCredentials returns an empty StaticCredentials.
func NewStaticCredentials() *StaticCredentials {
	return &StaticCredentials{creds: map[credKey]Credential{}}
}

// Set records the credentials of a device.
func (s *StaticCredentials) Set(tenant, deviceKey string, c Credential) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.creds[credKey{tenant, deviceKey}] = c
}

// CPECredentials implements Credentials.
func (s *StaticCredentials) CPECredentials(_ context.Context, tenant, deviceKey string) (Credential, bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	c, ok := s.creds[credKey{tenant, deviceKey}]
	return c, ok, nil
}
