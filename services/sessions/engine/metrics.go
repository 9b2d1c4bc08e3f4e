package engine

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
)

// metrics are the worker's instruments. Attribute sets are built once, so
// that counting costs no allocation on the exchange path.
type metrics struct {
	started    metric.Int64Counter
	ended      metric.Int64Counter
	leaseLost  metric.Int64Counter
	takeovers  metric.Int64Counter
	refused    metric.Int64Counter
	anomalies  metric.Int64Counter
	failures   metric.Int64Counter
	exchange   metric.Float64Histogram
	duration   metric.Float64Histogram
	events     metric.Int64Counter
	rpcs       metric.Int64Counter
	discovered metric.Int64Counter
	truncated  metric.Int64Counter
	postponed  metric.Int64Counter
	quirks     metric.Int64Counter
}

// Outcomes of a session (attribute "outcome" of fleetacs.sessions.ended).
const (
	outcomeCompleted  = "completed"  // ended by the protocol, results recorded
	outcomeExpired    = "expired"    // idle past its timeout
	outcomeAbandoned  = "abandoned"  // the gateway gave up on it
	outcomeSuperseded = "superseded" // a newer session of the device took over
	outcomeFailed     = "failed"     // the worker could not record or answer
	outcomeRefused    = "refused"    // never started (fault to a lone message)
)

// Where a lost lease was noticed (attribute "stage" of
// fleetacs.sessions.lease_lost).
const (
	lostAtInform     = "inform"     // inventory already holds a newer token
	lostAtRenew      = "renew"      // lease renewal refused
	lostAtCheckpoint = "checkpoint" // checkpoint save fenced off
	lostAtRecord     = "record"     // RecordSession refused with LEASE_LOST
	lostAtResume     = "resume"     // renewal on resume refused
)

// Kinds of worker failure (attribute "op" of fleetacs.sessions.failures).
const (
	failCheckpoint = "checkpoint"
	failRecord     = "record"
	failInventory  = "inventory_load"
	failEncode     = "encode"
	failRelease    = "release"
	failRenew      = "renew"
	failRegistry   = "registry"
	failProfile    = "discovery_profile"
)

// Why an exchange was refused (attribute "reason" of
// fleetacs.sessions.refused).
const (
	refusedDraining = "draining" // the worker is draining or stopped
	refusedCapacity = "capacity" // the worker holds its maximum of sessions
	refusedMemory   = "memory"   // the sessions' memory budget is spent (503)
)

// How a CPE's answer to an ACS request departed from the protocol and was
// taken anyway (attribute "quirk" of fleetacs.sessions.answer_quirks).
const (
	quirkMissingID    = "missing_id"    // no cwmp:ID: matched by method
	quirkForeignID    = "foreign_id"    // a cwmp:ID the ACS never gave: matched by method
	quirkRetryRequest = "retry_request" // fault 8005: the request was sent again
)

// What a session's limits cut short (attribute "what" of
// fleetacs.sessions.truncated).
const (
	truncInform    = "inform"    // Inform parameters dropped (counted one by one)
	truncDiscovery = "discovery" // discoveries stopped early (one each)
)

func newMetrics(mp metric.MeterProvider, active func() int, memory, discovering func() int64) (*metrics, error) {
	if mp == nil {
		mp = noop.NewMeterProvider()
	}
	m := mp.Meter("github.com/fleetacs/fleetacs/services/sessions")
	var errs []error
	counter := func(name, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	ms := &metrics{
		started:    counter("fleetacs.sessions.started", "CWMP sessions started (Informs accepted)"),
		ended:      counter("fleetacs.sessions.ended", "CWMP sessions ended, by outcome"),
		leaseLost:  counter("fleetacs.sessions.lease_lost", "sessions that found their device lease lost (superseded), by stage"),
		takeovers:  counter("fleetacs.sessions.takeovers", "sessions whose lease took over a session that still looked live"),
		refused:    counter("fleetacs.sessions.refused", "exchanges refused before they started, by reason"),
		anomalies:  counter("fleetacs.sessions.anomalies", "CPE messages that broke the protocol, by kind"),
		failures:   counter("fleetacs.sessions.failures", "failed calls to inventory or the affinity store, by operation"),
		discovered: counter("fleetacs.sessions.discovered_parameters", "parameters learned by tree discoveries"),
		truncated:  counter("fleetacs.sessions.truncated", "what sessions' limits cut short: Inform parameters dropped, discoveries stopped early"),
		postponed:  counter("fleetacs.sessions.discoveries_postponed", "tree discoveries postponed to a later session: the worker ran sessions.max-discoveries already"),
		events:     counter("fleetacs.sessions.inform_events", "events of the Informs that started sessions, by event code (vendor codes as \"vendor\")"),
		quirks:     counter("fleetacs.sessions.answer_quirks", "CPE answers to ACS requests taken despite a quirk, by quirk (missing_id, foreign_id: matched by method; retry_request: fault 8005, the request sent again) and method (vendor methods as \"vendor\")"),
		rpcs:       counter("fleetacs.sessions.rpcs", "ACS requests the CPE answered, by method (vendor methods as \"vendor\") and fault code (\"none\"; CWMP's 8000 and 9000 series by number, 9800 to 9899 as \"vendor\")"),
	}
	// Seconds: the SDK's default boundaries (0 to 10,000) are made for
	// milliseconds and would put every exchange in their first bucket.
	h, err := m.Float64Histogram("fleetacs.sessions.exchange.duration", metric.WithUnit("s"),
		metric.WithDescription("time the worker took to answer one CPE request"),
		metric.WithExplicitBucketBoundaries(exchangeBuckets...))
	errs = append(errs, err)
	ms.exchange = h
	d, err := m.Float64Histogram("fleetacs.sessions.duration", metric.WithUnit("s"),
		metric.WithDescription("time from a session's Inform to its end, by outcome"),
		metric.WithExplicitBucketBoundaries(sessionBuckets...))
	errs = append(errs, err)
	ms.duration = d
	_, err = m.Int64ObservableGauge("fleetacs.sessions.active", metric.WithDescription("sessions held by the worker"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(int64(active()))
			return nil
		}))
	errs = append(errs, err)
	_, err = m.Int64ObservableGauge("fleetacs.sessions.memory", metric.WithUnit("By"),
		metric.WithDescription("estimated bytes the worker's sessions hold, as the memory budget counts them"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(memory())
			return nil
		}))
	errs = append(errs, err)
	_, err = m.Int64ObservableGauge("fleetacs.sessions.discovering", metric.WithDescription("sessions of the worker running a tree discovery"),
		metric.WithInt64Callback(func(_ context.Context, o metric.Int64Observer) error {
			o.Observe(discovering())
			return nil
		}))
	errs = append(errs, err)
	for _, err := range errs {
		if err != nil {
			return nil, fmt.Errorf("create session metrics: %w", err)
		}
	}
	return ms, nil
}

// exchangeBuckets are the boundaries, in seconds, of
// fleetacs.sessions.exchange.duration: an exchange takes a few
// milliseconds, up to the exchange deadline under load.
var exchangeBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20}

// sessionBuckets are the boundaries, in seconds, of
// fleetacs.sessions.duration: a periodic session takes milliseconds, one
// with a tree discovery or many tasks seconds, up to the session deadline.
var sessionBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300}

// attrCache holds one attribute set per "key=value"; it is filled once at
// package initialisation and only read afterwards.
var attrCache = map[string]metric.MeasurementOption{}

func init() {
	var kinds []string
	for k := cwmp.AnomalyDecode; k <= cwmp.AnomalyNoResponse; k++ {
		kinds = append(kinds, k.String())
	}
	for key, values := range map[string][]string{
		"kind":    kinds,
		"outcome": {outcomeCompleted, outcomeExpired, outcomeAbandoned, outcomeSuperseded, outcomeFailed, outcomeRefused},
		"stage":   {lostAtInform, lostAtRenew, lostAtCheckpoint, lostAtRecord, lostAtResume},
		"op":      {failCheckpoint, failRecord, failInventory, failEncode, failRelease, failRenew, failRegistry, failProfile},
		"reason":  {refusedCapacity, refusedDraining, refusedMemory},
		"what":    {truncInform, truncDiscovery},
	} {
		for _, v := range values {
			attrCache[key+"="+v] = metric.WithAttributeSet(attribute.NewSet(attribute.String(key, v)))
		}
	}
}

func attr(key, value string) metric.MeasurementOption {
	if o, ok := attrCache[key+"="+value]; ok {
		return o
	}
	return metric.WithAttributes(attribute.String(key, value))
}

func (m *metrics) count(c metric.Int64Counter, key, value string) {
	c.Add(context.Background(), 1, attr(key, value))
}

func (m *metrics) observeExchange(d time.Duration) {
	m.exchange.Record(context.Background(), d.Seconds())
}

// sessionEnded counts a session's end with its outcome and, for a session that
// had an Inform at start, its duration.
func (m *metrics) sessionEnded(start, now time.Time, outcome string) {
	o := attr("outcome", outcome)
	m.ended.Add(context.Background(), 1, o)
	if !start.IsZero() {
		m.duration.Record(context.Background(), now.Sub(start).Seconds(), o)
	}
}

// informEvents counts the events of an Inform that started a session.
func (m *metrics) informEvents(events []cwmp.Event) {
	for _, ev := range events {
		code := ev.Code
		if !cwmp.IsStandardEvent(code) {
			code = "vendor"
		}
		m.events.Add(context.Background(), 1, eventAttr(code))
	}
}

// rpc counts an ACS request the CPE answered, with its fault (nil: none).
func (m *metrics) rpc(method string, f *cwmp.Fault) {
	if !cwmp.IsACSMethod(method) {
		method = "vendor"
	}
	fault := "none"
	if f != nil {
		switch c := int(f.Code); {
		case c >= 9800 && c <= 9899:
			fault = "vendor"
		case c >= 8000 && c <= 8099, c >= 9000 && c <= 9099:
			fault = strconv.Itoa(c)
		default:
			fault = "other"
		}
	}
	m.rpcs.Add(context.Background(), 1, rpcAttr(method, fault))
}

// answerQuirks counts the quirks of one CPE answer to an ACS request of
// method: a missing or foreign cwmp:ID, and retried for a fault 8005 that
// had the request sent again.
func (m *metrics) answerQuirks(method string, matched cwmp.Matched, retried bool) {
	if !cwmp.IsACSMethod(method) {
		method = "vendor"
	}
	if matched.MissingID {
		m.quirks.Add(context.Background(), 1, quirkAttr(method, quirkMissingID))
	}
	if matched.ForeignID != "" {
		m.quirks.Add(context.Background(), 1, quirkAttr(method, quirkForeignID))
	}
	if retried {
		m.quirks.Add(context.Background(), 1, quirkAttr(method, quirkRetryRequest))
	}
}

// labelSets holds the attribute sets of labels whose values are bounded
// but too many to list at start (events; methods by faults or quirks), built on
// first use. The key is a value, so a lookup allocates nothing.
var labelSets = struct {
	sync.RWMutex
	m map[[2]string]metric.MeasurementOption
}{m: map[[2]string]metric.MeasurementOption{}}

func labelSet(k [2]string, build func() attribute.Set) metric.MeasurementOption {
	labelSets.RLock()
	o, ok := labelSets.m[k]
	labelSets.RUnlock()
	if ok {
		return o
	}
	labelSets.Lock()
	defer labelSets.Unlock()
	if o, ok := labelSets.m[k]; ok {
		return o
	}
	o = metric.WithAttributeSet(build())
	labelSets.m[k] = o
	return o
}

func eventAttr(code string) metric.MeasurementOption {
	return labelSet([2]string{"", code}, func() attribute.Set { return attribute.NewSet(attribute.String("event", code)) })
}

func rpcAttr(method, fault string) metric.MeasurementOption {
	return labelSet([2]string{method, fault}, func() attribute.Set {
		return attribute.NewSet(attribute.String("method", method), attribute.String("fault", fault))
	})
}

func quirkAttr(method, quirk string) metric.MeasurementOption {
	// The quirk values are not fault labels, so the key is rpcAttr's kind
	// of key without clashing with any of its.
	return labelSet([2]string{method, quirk}, func() attribute.Set {
		return attribute.NewSet(attribute.String("method", method), attribute.String("quirk", quirk))
	})
}
