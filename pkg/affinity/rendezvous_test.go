package affinity_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/affinity"
)

func workers(n int) []affinity.Worker {
	ws := make([]affinity.Worker, n)
	for i := range ws {
		ws[i] = affinity.Worker{ID: fmt.Sprintf("sessions-%d", i), Addr: fmt.Sprintf("10.0.0.%d:9090", i)}
	}
	return ws
}

func deviceKeyN(i int) string { return fmt.Sprintf("default/00259E-HG8245H-%08X", i) }

func TestRendezvousEmpty(t *testing.T) {
	if w := affinity.Rendezvous("k", nil); w != (affinity.Worker{}) {
		t.Fatalf("Rendezvous over no workers = %+v, want the zero Worker", w)
	}
	if ws := affinity.RendezvousOrder("k", nil); len(ws) != 0 {
		t.Fatalf("RendezvousOrder over no workers = %+v", ws)
	}
}

func TestRendezvousIgnoresOrder(t *testing.T) {
	ws := workers(7)
	rev := slices.Clone(ws)
	slices.Reverse(rev)
	for i := range 2000 {
		k := deviceKeyN(i)
		if a, b := affinity.Rendezvous(k, ws), affinity.Rendezvous(k, rev); a.ID != b.ID {
			t.Fatalf("key %s: %s in one order, %s in the other", k, a.ID, b.ID)
		}
	}
}

// TestRendezvousStable pins a few answers: every gateway, of every release,
// must route a key to the same worker, so the hash may never change by
// accident.
func TestRendezvousStable(t *testing.T) {
	ws := workers(5)
	got := make([]string, 8)
	for i := range got {
		got[i] = affinity.Rendezvous(deviceKeyN(i), ws).ID
	}
	want := []string{"sessions-2", "sessions-0", "sessions-3", "sessions-1", "sessions-2", "sessions-1", "sessions-0", "sessions-0"}
	if !slices.Equal(got, want) {
		t.Fatalf("routes = %q, want %q", got, want)
	}
}

func TestRendezvousDistributionAndMovement(t *testing.T) {
	const keys = 10000
	ws := workers(5)
	owner := make([]string, keys)
	count := map[string]int{}
	for i := range keys {
		owner[i] = affinity.Rendezvous(deviceKeyN(i), ws).ID
		count[owner[i]]++
	}
	for _, w := range ws {
		if n, even := count[w.ID], keys/len(ws); n < even*85/100 || n > even*115/100 {
			t.Errorf("worker %s owns %d keys, want %d ± 15%%", w.ID, n, even)
		}
	}

	// A worker leaves: only its keys move, and they spread over the rest.
	gone := ws[2].ID
	left := slices.Delete(slices.Clone(ws), 2, 3)
	to := map[string]int{}
	for i := range keys {
		now := affinity.Rendezvous(deviceKeyN(i), left).ID
		switch {
		case owner[i] == gone:
			to[now]++
		case now != owner[i]:
			t.Fatalf("key %d moved from %s to %s, though %s is still there", i, owner[i], now, owner[i])
		}
	}
	for _, w := range left {
		if share, even := to[w.ID], count[gone]/len(left); share < even*70/100 || share > even*130/100 {
			t.Errorf("worker %s took %d of the leaver's %d keys, want about %d", w.ID, share, count[gone], even)
		}
	}

	// A worker joins: keys move only to it, about a sixth of them.
	joined := append(slices.Clone(ws), affinity.Worker{ID: "sessions-new"})
	moved := 0
	for i := range keys {
		now := affinity.Rendezvous(deviceKeyN(i), joined).ID
		if now != owner[i] {
			if now != "sessions-new" {
				t.Fatalf("key %d moved from %s to %s when a worker joined", i, owner[i], now)
			}
			moved++
		}
	}
	if even := keys / len(joined); moved < even*85/100 || moved > even*115/100 {
		t.Errorf("%d keys moved to the new worker, want %d ± 15%%", moved, even)
	}
}

func TestRendezvousWeighted(t *testing.T) {
	const keys = 20000
	ws := []affinity.Worker{{ID: "big", Capacity: 2000}, {ID: "mid", Capacity: 1000}, {ID: "small", Capacity: 1000}}
	count := map[string]int{}
	for i := range keys {
		count[affinity.Rendezvous(deviceKeyN(i), ws).ID]++
	}
	for id, want := range map[string]int{"big": keys / 2, "mid": keys / 4, "small": keys / 4} {
		if n := count[id]; n < want*90/100 || n > want*110/100 {
			t.Errorf("worker %s owns %d keys, want %d ± 10%% (capacity-weighted)", id, n, want)
		}
	}
	// Removing a weighted worker still moves only its keys.
	left := ws[1:]
	for i := range keys {
		before := affinity.Rendezvous(deviceKeyN(i), ws).ID
		after := affinity.Rendezvous(deviceKeyN(i), left).ID
		if before != "big" && before != after {
			t.Fatalf("key %d moved from %s to %s", i, before, after)
		}
	}
}

func TestRendezvousOrder(t *testing.T) {
	ws := workers(6)
	for i := range 500 {
		k := deviceKeyN(i)
		order := affinity.RendezvousOrder(k, ws)
		if len(order) != len(ws) || order[0].ID != affinity.Rendezvous(k, ws).ID {
			t.Fatalf("key %s: order %v does not start with Rendezvous's choice", k, order)
		}
		// The fallback is where the key goes when its first choice leaves.
		rest := slices.DeleteFunc(slices.Clone(ws), func(w affinity.Worker) bool { return w.ID == order[0].ID })
		if second := affinity.Rendezvous(k, rest); second.ID != order[1].ID {
			t.Fatalf("key %s: second choice %s, but without the first the key goes to %s", k, order[1].ID, second.ID)
		}
	}
}

func BenchmarkRendezvous(b *testing.B) {
	for _, n := range []int{5, 50} {
		b.Run(fmt.Sprintf("workers=%d", n), func(b *testing.B) {
			ws := workers(n)
			keys := make([]string, 1024)
			for i := range keys {
				keys[i] = deviceKeyN(i)
			}
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				_ = affinity.Rendezvous(keys[i%len(keys)], ws)
			}
		})
	}
}
