package notifier

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

type metrics struct {
	outcomes    metric.Int64Counter
	latency     metric.Float64Histogram
	stunDropped metric.Int64Counter
	// bindingErrors counts failures of the shared STUN bindings, by op:
	// put, get, queue_full, refused.
	bindingErrors metric.Int64Counter
}

func newMetrics(m metric.Meter) (*metrics, error) {
	var out metrics
	var err error
	if out.outcomes, err = m.Int64Counter("fleetacs.notifier.connection_requests",
		metric.WithDescription("Wake requests answered, by outcome status and transport"), metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if out.latency, err = m.Float64Histogram("fleetacs.notifier.connection_request.duration",
		metric.WithDescription("Time from a wake request to its outcome"), metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 60)); err != nil {
		return nil, err
	}
	if out.stunDropped, err = m.Int64Counter("fleetacs.notifier.stun.dropped",
		metric.WithDescription("STUN datagrams dropped: malformed, not a Binding Request, or a binding refused because the table is full"), metric.WithUnit("{datagram}")); err != nil {
		return nil, err
	}
	if out.bindingErrors, err = m.Int64Counter("fleetacs.notifier.stun.binding_errors",
		metric.WithDescription("Failures of the STUN bindings shared through Redis, by op: put and get (Redis failed), queue_full (a write dropped), refused (a stored binding that is malformed or names another address)"), metric.WithUnit("{error}")); err != nil {
		return nil, err
	}
	return &out, nil
}

func (m *metrics) bindingFailed(op string) {
	m.bindingErrors.Add(context.Background(), 1, metric.WithAttributes(attribute.String("op", op)))
}

func (m *metrics) record(ctx context.Context, r result, latency time.Duration) {
	attrs := metric.WithAttributes(attribute.String("status", StatusName(r.status)), attribute.String("transport", r.transport))
	m.outcomes.Add(ctx, 1, attrs)
	m.latency.Record(ctx, latency.Seconds(), attrs)
}
