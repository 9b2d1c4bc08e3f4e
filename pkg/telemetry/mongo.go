package telemetry

import (
	"context"
	"errors"

	"go.mongodb.org/mongo-driver/v2/event"
)

// MongoMonitor returns the command monitor that records every MongoDB
// command the client sends (system "mongodb", operation the command's
// name, OpOther beyond the fixed set). Pass it to the client options'
// SetMonitor; with a nil c it returns nil, no monitor.
func (c *ClientMetrics) MongoMonitor() *event.CommandMonitor {
	if c == nil {
		return nil
	}
	return &event.CommandMonitor{
		Succeeded: func(ctx context.Context, e *event.CommandSucceededEvent) {
			c.Observe(ctx, SystemMongoDB, e.CommandName, e.Duration, nil)
		},
		Failed: func(ctx context.Context, e *event.CommandFailedEvent) {
			c.Observe(ctx, SystemMongoDB, e.CommandName, e.Duration, mongoErr(e.Failure))
		},
	}
}

// mongoErr is a failed command's error as a metric error: a collection
// that does not exist (yet: listIndexes on a new collection, drop of a
// missing one) is an answer, not a failure.
func mongoErr(err error) error {
	var nf interface{ NamespaceNotFound() bool }
	if errors.As(err, &nf) && nf.NamespaceNotFound() {
		return nil
	}
	return err
}
