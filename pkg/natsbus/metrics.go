package natsbus

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/telemetry"
)

// Client metrics (telemetry.ClientMetrics, system "nats"): Instrument
// wraps a JetStream so that the calls the services make on it are recorded
// where they are made, with the operations
//
//	publish      Publish and PublishMsg, until the stream's acknowledgement
//	ack_wait     AsyncPublisher: from the asynchronous publish to its acknowledgement
//	direct_get   Stream.GetMsg and GetLastMsgForSubject (direct gets: the streams allow them)
//	stream_info  JetStream.Stream and Stream.Info
//	delete_msg   Stream.DeleteMsg
//
// A missing message or stream is an answer, not an error.

// metricsSource is a JetStream that records client metrics.
type metricsSource interface {
	ClientMetrics() *telemetry.ClientMetrics
}

// MetricsOf returns the client metrics js records into: its own when it is
// an Instrument wrapper or forwards one (ClientMetrics method), nil
// otherwise.
func MetricsOf(js jetstream.JetStream) *telemetry.ClientMetrics {
	if s, ok := js.(metricsSource); ok {
		return s.ClientMetrics()
	}
	return nil
}

// Instrument returns js recording its calls into m (js itself when m is
// nil).
func Instrument(js jetstream.JetStream, m *telemetry.ClientMetrics) jetstream.JetStream {
	if m == nil {
		return js
	}
	return &instrumented{JetStream: js, m: m}
}

type instrumented struct {
	jetstream.JetStream
	m *telemetry.ClientMetrics
}

func (j *instrumented) ClientMetrics() *telemetry.ClientMetrics { return j.m }

func (j *instrumented) Publish(ctx context.Context, subj string, data []byte, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	start := time.Now()
	ack, err := j.JetStream.Publish(ctx, subj, data, opts...)
	j.m.Since(ctx, telemetry.SystemNATS, "publish", start, err)
	return ack, err
}

func (j *instrumented) PublishMsg(ctx context.Context, msg *nats.Msg, opts ...jetstream.PublishOpt) (*jetstream.PubAck, error) {
	start := time.Now()
	ack, err := j.JetStream.PublishMsg(ctx, msg, opts...)
	j.m.Since(ctx, telemetry.SystemNATS, "publish", start, err)
	return ack, err
}

func (j *instrumented) Stream(ctx context.Context, name string) (jetstream.Stream, error) {
	start := time.Now()
	s, err := j.JetStream.Stream(ctx, name)
	j.m.Since(ctx, telemetry.SystemNATS, "stream_info", start, notFoundIsAnswer(err))
	if err != nil {
		return nil, err
	}
	return &instrumentedStream{Stream: s, m: j.m}, nil
}

type instrumentedStream struct {
	jetstream.Stream
	m *telemetry.ClientMetrics
}

func (s *instrumentedStream) Info(ctx context.Context, opts ...jetstream.StreamInfoOpt) (*jetstream.StreamInfo, error) {
	start := time.Now()
	info, err := s.Stream.Info(ctx, opts...)
	s.m.Since(ctx, telemetry.SystemNATS, "stream_info", start, notFoundIsAnswer(err))
	return info, err
}

func (s *instrumentedStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	start := time.Now()
	m, err := s.Stream.GetMsg(ctx, seq, opts...)
	s.m.Since(ctx, telemetry.SystemNATS, "direct_get", start, notFoundIsAnswer(err))
	return m, err
}

func (s *instrumentedStream) GetLastMsgForSubject(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	start := time.Now()
	m, err := s.Stream.GetLastMsgForSubject(ctx, subject)
	s.m.Since(ctx, telemetry.SystemNATS, "direct_get", start, notFoundIsAnswer(err))
	return m, err
}

func (s *instrumentedStream) DeleteMsg(ctx context.Context, seq uint64) error {
	start := time.Now()
	err := s.Stream.DeleteMsg(ctx, seq)
	s.m.Since(ctx, telemetry.SystemNATS, "delete_msg", start, notFoundIsAnswer(err))
	return err
}

func notFoundIsAnswer(err error) error {
	if errors.Is(err, jetstream.ErrMsgNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil
	}
	return err
}
