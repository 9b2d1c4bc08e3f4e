package engine

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// ProductClass names the devices that share what discovery learns: one
// OUI (upper case) and product class (may be empty), within a tenant.
type ProductClass struct {
	Tenant       string
	OUI          string
	ProductClass string
}

func classOf(tenant string, id cwmp.DeviceID) ProductClass {
	return ProductClass{Tenant: tenant, OUI: strings.ToUpper(strings.TrimSpace(id.OUI)), ProductClass: strings.TrimSpace(id.ProductClass)}
}

// DiscoveryProfile is what sessions have learned about discovering the
// devices of one product class.
type DiscoveryProfile struct {
	// GPVBatchOK is the largest GetParameterValues batch a device of the
	// class answered; 0 when unknown.
	GPVBatchOK int
	// GPVBatchFailed is the smallest batch larger than GPVBatchOK that a
	// device refused with 9004 or was left holding when its session died;
	// 0 when none. Failures at or below GPVBatchOK are not the batch's
	// fault and are forgotten.
	GPVBatchFailed int
	// SubtreeGPNFailed: a session died while a GetParameterNames of the
	// whole tree was outstanding; the class is walked object by object.
	SubtreeGPNFailed bool
}

// DiscoveryObservation is what one discovery showed, merged into the
// class's profile: the largest OK wins, failures count only above it.
type DiscoveryObservation struct {
	GPVBatchOK       int
	GPVBatchFailed   int
	SubtreeGPNFailed bool
}

func (o DiscoveryObservation) empty() bool {
	return o.GPVBatchOK == 0 && o.GPVBatchFailed == 0 && !o.SubtreeGPNFailed
}

// Merge returns the profile with o taken into account, as the stores merge
// it.
func (p DiscoveryProfile) Merge(o DiscoveryObservation) DiscoveryProfile {
	out := DiscoveryProfile{GPVBatchOK: max(p.GPVBatchOK, o.GPVBatchOK), SubtreeGPNFailed: p.SubtreeGPNFailed || o.SubtreeGPNFailed}
	for _, f := range []int{p.GPVBatchFailed, o.GPVBatchFailed} {
		if f > out.GPVBatchOK && (out.GPVBatchFailed == 0 || f < out.GPVBatchFailed) {
			out.GPVBatchFailed = f
		}
	}
	return out
}

// profileTTL is how long a worker trusts a class's profile it read: other
// workers' lessons reach it at most this late.
const profileTTL = 30 * time.Second

// maxCachedProfiles bounds the cache; past it the cache starts over.
const maxCachedProfiles = 10_000

// profileCache keeps the discovery profiles this worker read or wrote, so
// that a boot storm of one product class reads its profile once, not once
// per device.
type profileCache struct {
	inv Inventory
	now func() time.Time

	mu sync.Mutex
	m  map[ProductClass]cachedProfile
}

type cachedProfile struct {
	p       DiscoveryProfile
	fetched time.Time
}

func newProfileCache(inv Inventory, now func() time.Time) *profileCache {
	return &profileCache{inv: inv, now: now, m: make(map[ProductClass]cachedProfile)}
}

// get returns the class's profile, from the cache while it is fresh.
func (c *profileCache) get(ctx context.Context, class ProductClass) (DiscoveryProfile, error) {
	now := c.now()
	c.mu.Lock()
	cp, ok := c.m[class]
	c.mu.Unlock()
	if ok && now.Sub(cp.fetched) < profileTTL {
		return cp.p, nil
	}
	p, err := c.inv.DiscoveryProfile(ctx, class)
	if err != nil {
		return cp.p, err
	}
	c.put(class, p, now)
	return p, nil
}

// news reports whether o would change what this worker knows of the class.
func (c *profileCache) news(class ProductClass, o DiscoveryObservation) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	cp, ok := c.m[class]
	return !ok || cp.p.Merge(o) != cp.p
}

// record stores o in the inventory and in the cache.
func (c *profileCache) record(ctx context.Context, class ProductClass, o DiscoveryObservation) error {
	if err := c.inv.RecordDiscovery(ctx, class, o); err != nil {
		return err
	}
	c.mu.Lock()
	cp := c.m[class]
	cp.p = cp.p.Merge(o)
	c.m[class] = cp // keeps the fetch time: the stored profile may know more
	c.mu.Unlock()
	return nil
}

func (c *profileCache) put(class ProductClass, p DiscoveryProfile, fetched time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= maxCachedProfiles {
		clear(c.m)
	}
	c.m[class] = cachedProfile{p: p, fetched: fetched}
}
