package connlimit

// Budget returns the number of connections listeners may hold in all in a
// process that may open limit file descriptors: the rest is kept for
// everything else the process opens (store files, connections to Redis,
// NATS and other services, the admin and gRPC listeners' own caps). It
// keeps a tenth of the limit, and at least 2,048 descriptors; below 4,096 it
// gives half the limit.
func Budget(limit uint64) int {
	if limit < 4096 {
		return int(limit / 2)
	}
	keep := max(limit/10, 2048)
	return int(limit - keep)
}
