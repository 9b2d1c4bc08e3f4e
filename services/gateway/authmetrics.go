package gateway

import (
	"context"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/fleetacs/fleetacs/pkg/authstate"
)

// authMetrics are the instruments of CPE authentication, session binding
// and orphaned leases, with their attribute sets built once.
type authMetrics struct {
	blocked        metric.Int64Counter
	bindingRefused metric.Int64Counter
	orphans        metric.Int64Counter

	blockedSets map[authstate.Kind]metric.AddOption
	bindingSets map[string]metric.AddOption
	orphanSets  map[string]metric.AddOption
}

func newAuthMetrics(m metric.Meter) (*authMetrics, error) {
	var out authMetrics
	var err error
	if out.blocked, err = m.Int64Counter("fleetacs.gateway.auth.blocked",
		metric.WithDescription("CPE authentication attempts refused with 503 without checking the password, after repeated failures, by the limit that blocked them"),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if out.bindingRefused, err = m.Int64Counter("fleetacs.gateway.sessions.binding_refused",
		metric.WithDescription("Requests refused with 403 because their session is bound to another client address or principal"),
		metric.WithUnit("{request}")); err != nil {
		return nil, err
	}
	if out.orphans, err = m.Int64Counter("fleetacs.gateway.leases.orphans",
		metric.WithDescription("Device leases of sessions that never started, left by a failed acquire or release: queued for release, or dropped (left to expire) when the queue was full"),
		metric.WithUnit("{lease}")); err != nil {
		return nil, err
	}
	set := func(k, v string) metric.AddOption {
		return metric.WithAttributeSet(attribute.NewSet(attribute.String(k, v)))
	}
	out.blockedSets = map[authstate.Kind]metric.AddOption{}
	for _, k := range []authstate.Kind{authstate.KindPair, authstate.KindSource, authstate.KindUser} {
		out.blockedSets[k] = set("limit", k.String())
	}
	out.bindingSets = map[string]metric.AddOption{bindAddress: set("reason", bindAddress), bindPrincipal: set("reason", bindPrincipal)}
	out.orphanSets = map[string]metric.AddOption{"queued": set("outcome", "queued"), "dropped": set("outcome", "dropped")}
	return &out, nil
}

func (m *authMetrics) countBlocked(ctx context.Context, k authstate.Kind) {
	m.blocked.Add(ctx, 1, m.blockedSets[k])
}

func (m *authMetrics) countBindingRefused(ctx context.Context, reason string) {
	m.bindingRefused.Add(ctx, 1, m.bindingSets[reason])
}

func (m *authMetrics) countOrphan(ctx context.Context, outcome string) {
	m.orphans.Add(ctx, 1, m.orphanSets[outcome])
}
