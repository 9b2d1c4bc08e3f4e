package authstate

import (
	"container/heap"
	"time"
)

// expMap is a map whose entries expire, bounded in size: a heap ordered by
// expiry drops expired entries as new ones come and, when the map is full,
// evicts the entry closest to its expiry. Not safe for concurrent use.
type expMap[V any] struct {
	max int
	m   map[string]*expEntry[V]
	h   expHeap[V]
}

type expEntry[V any] struct {
	key string
	val V
	exp time.Time
	idx int
}

func newExpMap[V any](maxEntries int) *expMap[V] {
	return &expMap[V]{max: maxEntries, m: map[string]*expEntry[V]{}}
}

// get returns the live entry of key.
func (e *expMap[V]) get(key string, now time.Time) (*expEntry[V], bool) {
	x, ok := e.m[key]
	if !ok {
		return nil, false
	}
	if !now.Before(x.exp) {
		e.remove(x)
		return nil, false
	}
	return x, true
}

// put stores val under key until exp, first dropping expired entries and,
// when the map is full, evicting the entry that expires first. It returns
// the evicted entry, if any (not an expired one).
func (e *expMap[V]) put(key string, val V, exp, now time.Time) (evicted *expEntry[V]) {
	for len(e.h) > 0 && !now.Before(e.h[0].exp) {
		e.remove(e.h[0])
	}
	if x, ok := e.m[key]; ok {
		x.val, x.exp = val, exp
		heap.Fix(&e.h, x.idx)
		return nil
	}
	if len(e.m) >= e.max && len(e.h) > 0 {
		evicted = e.h[0]
		e.remove(evicted)
	}
	x := &expEntry[V]{key: key, val: val, exp: exp}
	e.m[key] = x
	heap.Push(&e.h, x)
	return evicted
}

func (e *expMap[V]) remove(x *expEntry[V]) {
	heap.Remove(&e.h, x.idx)
	delete(e.m, x.key)
}

func (e *expMap[V]) del(key string) {
	if x, ok := e.m[key]; ok {
		e.remove(x)
	}
}

func (e *expMap[V]) len() int { return len(e.m) }

// expHeap orders entries by expiry (container/heap).
type expHeap[V any] []*expEntry[V]

func (h expHeap[V]) Len() int           { return len(h) }
func (h expHeap[V]) Less(i, j int) bool { return h[i].exp.Before(h[j].exp) }
func (h expHeap[V]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

func (h *expHeap[V]) Push(x any) {
	e := x.(*expEntry[V])
	e.idx = len(*h)
	*h = append(*h, e)
}

func (h *expHeap[V]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
