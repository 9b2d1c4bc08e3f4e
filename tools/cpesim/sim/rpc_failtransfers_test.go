package sim

import "testing"

func TestFailsTransfers(t *testing.T) {
	for _, c := range []struct {
		n    int
		f    float64
		want int
	}{{200, 0.3, 60}, {200, 0, 0}, {10, 1, 10}, {7, 0.5, 3}} {
		got := 0
		for i := range c.n {
			if failsTransfers(i, c.f) {
				got++
			}
		}
		if got != c.want {
			t.Errorf("%d devices, share %v: %d fail, want %d", c.n, c.f, got, c.want)
		}
	}
}
