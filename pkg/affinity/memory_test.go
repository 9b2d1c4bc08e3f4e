package affinity_test

import (
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/affinity"
	"github.com/fleetacs/fleetacs/pkg/affinity/affinitytest"
)

func TestMemoryConformance(t *testing.T) {
	affinitytest.Run(t, func(_ *testing.T, now func() time.Time) affinity.Store {
		return affinity.NewMemory(now).Store()
	})
}

// TestMemorySweep checks that records of sessions nobody looks up again do
// not pile up: memory follows the open sessions.
func TestMemorySweep(t *testing.T) {
	clk := affinitytest.NewClock(affinitytest.Start)
	m := affinity.NewMemory(clk.Now)
	a := m.Affinity()
	for i := range 100 {
		rec := affinity.SessionRecord{SessionID: string(rune('a'+i%26)) + string(rune('0'+i/26)), ClientIP: "192.0.2.1"}
		if err := a.Put(t.Context(), rec, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(2 * time.Minute)
	if err := a.Put(t.Context(), affinity.SessionRecord{SessionID: "new"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n := a.Len(); n != 1 {
		t.Fatalf("Len after the sweep = %d, want 1", n)
	}
}
