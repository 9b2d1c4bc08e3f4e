package sessions

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/fleetacs/fleetacs/services/sessions/engine"
)

// TestStatusOf: the engine's refusals and a request's own deadline or
// cancellation reach the gateway as the codes the SessionService contract
// gives them.
func TestStatusOf(t *testing.T) {
	for _, c := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("x: %w", engine.ErrInvalidRequest), codes.InvalidArgument},
		{fmt.Errorf("x: %w", engine.ErrAtCapacity), codes.ResourceExhausted},
		{fmt.Errorf("x: %w", engine.ErrUnavailable), codes.Unavailable},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{fmt.Errorf("wait for a large-exchange slot: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("wait for a slot: %w", context.Canceled), codes.Canceled},
		{fmt.Errorf("boom"), codes.Internal},
	} {
		if got := status.Code(statusOf(c.err)); got != c.want {
			t.Errorf("statusOf(%v) = %v, want %v", c.err, got, c.want)
		}
	}
}
