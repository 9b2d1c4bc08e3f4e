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
// embedded NATS server (file storage), in a stream holding one message for
// each of 10,000 devices after as many were queued and deleted (tasks
// that ended): from sequence 1, as a worker reads a queue it knows nothing
// of, and from the sequence of the device's first message, as it reads one
// its index knows.
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
	const devices = 10000
	st, err := js.Stream(context.Background(), names.TasksStream())
	if err != nil {
		b.Fatal(err)
	}
	first := make([]uint64, devices)
	for round := range 2 {
		for d := range devices {
			f, err := js.PublishMsgAsync(&nats.Msg{Subject: names.TaskQueue("t", fmt.Sprintf("D%05d", d)), Data: make([]byte, 60)})
			if err != nil {
				b.Fatal(err)
			}
			_ = f
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(30 * time.Second):
			b.Fatal("publishes not acknowledged")
		}
		if round == 0 {
			for seq := uint64(1); seq <= devices; seq++ {
				if err := st.DeleteMsg(context.Background(), seq); err != nil {
					b.Fatal(err)
				}
			}
		}
	}
	for d := range devices {
		first[d] = uint64(devices + d + 1)
	}
	read := func(b *testing.B, from func(d int) uint64) {
		for i := 0; b.Loop(); i++ {
			d := (i * 7919) % devices
			subj := names.TaskQueue("t", fmt.Sprintf("D%05d", d))
			m, err := st.GetMsg(context.Background(), from(d), jetstream.WithGetMsgSubject(subj))
			if err != nil || m.Sequence != first[d] {
				b.Fatalf("device %d: %v, %v", d, m, err)
			}
			if _, err := st.GetMsg(context.Background(), m.Sequence+1, jetstream.WithGetMsgSubject(subj)); !natsbus.IsNotFound(err) {
				b.Fatalf("device %d: second message: %v", d, err)
			}
		}
	}
	b.Run("from=1", func(b *testing.B) { read(b, func(int) uint64 { return 1 }) })
	b.Run("from=first", func(b *testing.B) { read(b, func(d int) uint64 { return first[d] }) })
}
