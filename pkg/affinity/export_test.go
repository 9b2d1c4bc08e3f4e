package affinity

// Internals for the external tests.

// Scripts is every Lua script the Redis store runs.
var Scripts = scripts

// KeyGroups returns, for each Lua script, the keys one call of it touches
// (for a given device, session and address), so tests can check they share
// a hash tag.
func (r *Redis) KeyGroups(tenant, deviceKey, sessionID, ip string) map[string][]string {
	return map[string][]string{
		"acquire":  {r.leaseKey(tenant, deviceKey), r.tokenKey(tenant, deviceKey)},
		"renew":    {r.leaseKey(tenant, deviceKey)},
		"release":  {r.leaseKey(tenant, deviceKey)},
		"save":     {r.checkpointKey(tenant, deviceKey, sessionID), r.fenceKey(tenant, deviceKey), r.journalKey(tenant, deviceKey, sessionID)},
		"load":     {r.checkpointKey(tenant, deviceKey, sessionID), r.journalKey(tenant, deviceKey, sessionID)},
		"register": {r.workersExpKey(), r.workersInfoKey()},
	}
}

// Key names, for tests that inspect TTLs.
func (r *Redis) LeaseKey(tenant, deviceKey string) string { return r.leaseKey(tenant, deviceKey) }
func (r *Redis) TokenKey(tenant, deviceKey string) string { return r.tokenKey(tenant, deviceKey) }
func (r *Redis) CheckpointKey(tenant, deviceKey, sessionID string) string {
	return r.checkpointKey(tenant, deviceKey, sessionID)
}
func (r *Redis) FenceKey(tenant, deviceKey string) string { return r.fenceKey(tenant, deviceKey) }
func (r *Redis) SessionKey(sessionID string) string       { return r.sessionKey(sessionID) }
func (r *Redis) IPKey(ip string) string                   { return r.ipKey(ip) }
func (r *Redis) WorkerKeys() []string                     { return []string{r.workersExpKey(), r.workersInfoKey()} }
