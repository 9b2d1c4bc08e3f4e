package sessions

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/natsembed"
)

// BenchmarkQueueRead measures the read of one device's task queue on the
// embedded NATS server (file storage), the worker's two ways
// (tasks_nats.go): by subject from sequence 1, as a worker reads a queue
// its index does not know all of, and each message by its sequence, as it
// reads one it does. The stream holds 4 messages for each of 2,500
// devices, queued round after round as CreateTasks does, so that a
// device's messages are 2,500 apart.
func BenchmarkQueueRead(b *testing.B) {
	srv := natsembed.New("127.0.0.1", -1, b.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	<-srv.Ready()
	nc, js, err := natsbus.Connect(context.Background(), srv.URL(), "bench", 5*time.Second, srv.InProcess())
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	names := natsbus.New("qb", "QB_")
	if err := natsbus.EnsureStreams(context.Background(), js, names, natsbus.StreamOptions{Replicas: 1, MaxTasksPerDevice: 100,
		EventsMaxAge: time.Hour, EventsMaxBytes: 1 << 20, WakeMaxAge: time.Minute}); err != nil {
		b.Fatal(err)
	}
	const devices, rounds = 2500, 4
	st, err := js.Stream(context.Background(), names.TasksStream())
	if err != nil {
		b.Fatal(err)
	}
	for range rounds {
		for d := range devices {
			if _, err := js.PublishMsgAsync(&nats.Msg{Subject: names.TaskQueue("t", fmt.Sprintf("D%05d", d)), Data: make([]byte, 60)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		b.Fatal("publishes not acknowledged")
	}
	seqsOf := func(d int) []uint64 {
		out := make([]uint64, rounds)
		for r := range rounds {
			out[r] = uint64(r*devices + d + 1)
		}
		return out
	}
	b.Run("by-subject", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			d := (i * 7919) % devices
			subj := names.TaskQueue("t", fmt.Sprintf("D%05d", d))
			n, seq := 0, uint64(1)
			for {
				m, err := st.GetMsg(context.Background(), seq, jetstream.WithGetMsgSubject(subj))
				if natsbus.IsNotFound(err) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
				n, seq = n+1, m.Sequence+1
			}
			if n != rounds {
				b.Fatalf("device %d: %d messages", d, n)
			}
		}
	})
	b.Run("by-sequence", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			d := (i * 7919) % devices
			subj := names.TaskQueue("t", fmt.Sprintf("D%05d", d))
			for _, seq := range seqsOf(d) {
				m, err := st.GetMsg(context.Background(), seq)
				if err != nil || m.Subject != subj {
					b.Fatalf("device %d at %d: %v, %v", d, seq, m, err)
				}
			}
		}
	})
}
