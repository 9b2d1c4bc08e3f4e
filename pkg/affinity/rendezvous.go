package affinity

import (
	"cmp"
	"math"
	"slices"
)

// Rendezvous picks the worker for key by highest-random-weight hashing: every
// worker gets a pseudo-random score for the key and the highest wins. It is
// deterministic (every gateway computes the same answer from the same worker
// set, in any order) and moves the fewest keys when the set changes: when a
// worker leaves, only its keys move, spread over the others; when one joins,
// it takes only keys it now wins. Workers are weighted by Capacity.
//
// It returns the zero Worker when workers is empty.
func Rendezvous(key string, workers []Worker) Worker {
	if len(workers) == 0 {
		return Worker{}
	}
	hk := fnv1a(key)
	equal := equalWeights(workers)
	best, bestScore := 0, 0.0
	for i := range workers {
		s := score(hk, &workers[i], equal)
		if i == 0 || s > bestScore || (s == bestScore && workers[i].ID < workers[best].ID) {
			best, bestScore = i, s
		}
	}
	return workers[best]
}

// RendezvousOrder returns workers sorted by their Rendezvous preference for
// key, best first: the first is Rendezvous(key, workers), and the next ones
// are where to retry when it is busy. workers is not modified.
func RendezvousOrder(key string, workers []Worker) []Worker {
	hk := fnv1a(key)
	equal := equalWeights(workers)
	type ranked struct {
		w Worker
		s float64
	}
	r := make([]ranked, len(workers))
	for i := range workers {
		r[i] = ranked{workers[i], score(hk, &workers[i], equal)}
	}
	slices.SortFunc(r, func(a, b ranked) int {
		if c := cmp.Compare(b.s, a.s); c != 0 {
			return c
		}
		return cmp.Compare(a.w.ID, b.w.ID)
	})
	out := make([]Worker, len(r))
	for i := range r {
		out[i] = r[i].w
	}
	return out
}

func weight(w *Worker) float64 { return float64(max(w.Capacity, 1)) }

func equalWeights(ws []Worker) bool {
	for i := 1; i < len(ws); i++ {
		if weight(&ws[i]) != weight(&ws[0]) {
			return false
		}
	}
	return true
}

// score is the worker's weight for the key. With equal weights it is the
// uniform hash itself: no floating-point logarithm whose last bit could
// differ between CPU architectures. With unequal ones it is the logarithmic
// method (w / -ln u), under which a worker wins a share of keys
// proportional to its weight and the minimal-movement property still holds.
func score(hk uint64, w *Worker, equal bool) float64 {
	h := mix64(hk ^ (fnv1a(w.ID) * 0x9e3779b97f4a7c15))
	// 53 random bits, shifted into (0, 1): never 0, so the log is finite.
	u := (float64(h>>11) + 0.5) / (1 << 53)
	if equal {
		return u
	}
	return weight(w) / -math.Log(u)
}

// fnv1a is the 64-bit FNV-1a hash: fast on short keys, allocation-free and
// stable across processes and releases (unlike hash/maphash), which routing
// needs: every gateway must agree.
func fnv1a(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// mix64 is a 64-bit finalizer (MurmurHash3's fmix64). FNV-1a alone mixes
// its last bytes poorly, and keys and worker IDs often differ only there.
func mix64(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
