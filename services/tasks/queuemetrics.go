package tasks

import (
	"context"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/metric"
)

// queueInfoTimeout bounds the stream info a scrape asks for.
const queueInfoTimeout = 2 * time.Second

// registerQueueMetrics registers the task queue's gauges on mp, computed
// at each scrape from the tasks stream's state (one STREAM.INFO request):
//
//	fleetacs_tasks_queue_depth               messages in the stream: tasks queued for their devices
//	fleetacs_tasks_queue_oldest_age_seconds  age of the oldest of them (0 when none)
//	fleetacs_tasks_events_redo               task events waiting in this replica to be published again
//	fleetacs_tasks_events_dropped_total      task events dropped from that wait (docs/events.md)
//
// No labels: the stream holds every tenant's and device's queue. Every
// tasks replica reports the same stream, so dashboards take the max of the
// first two (and the sum of the last two, which are per replica). Before
// Start, or when NATS does not answer, the queue's gauges are absent from
// the scrape (and the failed call counts in
// fleetacs_client_request_errors_total).
func (s *Service) registerQueueMetrics(mp metric.MeterProvider) (metric.Registration, error) {
	m := mp.Meter("github.com/fleetacs/fleetacs/services/tasks")
	depth, err := m.Int64ObservableGauge("fleetacs.tasks.queue.depth",
		metric.WithDescription("Tasks queued for their devices: the messages in the tasks stream."))
	if err != nil {
		return nil, fmt.Errorf("tasks queue metrics: %w", err)
	}
	age, err := m.Float64ObservableGauge("fleetacs.tasks.queue.oldest.age", metric.WithUnit("s"),
		metric.WithDescription("Age of the oldest task queued for its device; 0 when none is."))
	if err != nil {
		return nil, fmt.Errorf("tasks queue metrics: %w", err)
	}
	redo, err := m.Int64ObservableGauge("fleetacs.tasks.events.redo",
		metric.WithDescription("Task events whose publish failed, waiting in this replica to be published again."))
	if err != nil {
		return nil, fmt.Errorf("tasks queue metrics: %w", err)
	}
	dropped, err := m.Int64ObservableCounter("fleetacs.tasks.events.dropped",
		metric.WithDescription("Task events dropped because too many waited to be published again (lost to watchers)."))
	if err != nil {
		return nil, fmt.Errorf("tasks queue metrics: %w", err)
	}
	return m.RegisterCallback(func(ctx context.Context, o metric.Observer) error {
		o.ObserveInt64(redo, s.redo.Len())
		o.ObserveInt64(dropped, s.redo.Dropped())
		if !s.ready.Load() {
			return nil
		}
		ictx, cancel := context.WithTimeout(ctx, queueInfoTimeout)
		defer cancel()
		st, err := s.queueStream(ictx)
		if err != nil {
			return nil // absent; the lookup's failure is logged by its callers
		}
		info, err := st.Info(ictx)
		if err != nil {
			return nil
		}
		o.ObserveInt64(depth, int64(info.State.Msgs))
		var oldest float64
		if info.State.Msgs > 0 && !info.State.FirstTime.IsZero() {
			// The stream's clock against this host's: the service's
			// injected clock is for task records, not for NATS.
			oldest = max(time.Since(info.State.FirstTime).Seconds(), 0)
		}
		o.ObserveFloat64(age, oldest)
		return nil
	}, depth, age, redo, dropped)
}
