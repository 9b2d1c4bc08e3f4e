package natsbus_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// TestClusterReplicatedStreams runs the three streams with three replicas
// on a three-node NATS cluster and kills the node that leads the task
// stream while tasks are being queued: every task queued (each publish
// retried until acknowledged, under its message id as the tasks service
// does) is in the stream exactly once, wake-up requests queued before the
// crash are each taken by the notifiers' consumer, and the streams keep
// taking and serving messages on the two nodes left.
func TestClusterReplicatedStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	start := time.Now()
	phase := func(what string) { t.Logf("%6.1fs %s", time.Since(start).Seconds(), what) }
	nc3 := testenv.NATSCluster(t)
	phase("cluster up")
	// Every JetStream API request below has its own deadline and is asked
	// again when it goes unanswered: a request that reaches a stream while
	// its replicas elect a leader can stay unanswered on nats-server 2.9,
	// and one such request once held the test until an overall deadline
	// ran out. Services do the same (EnsureStreams asks again).
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute) // before the crash
	defer cancel()
	nc, js, err := natsbus.Connect(ctx, nc3.URL(), "cluster-test", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	names := natsbus.New("", "")
	opts := natsbus.DefaultStreamOptions
	opts.Replicas = 3
	if err := natsbus.EnsureStreams(ctx, js, names, opts); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{names.TasksStream(), names.WakeStream(), names.EventsStream()} {
		s, err := js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		info := s.CachedInfo()
		if info.Config.Replicas != 3 || info.Cluster == nil || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("stream %s: %d replicas configured, cluster %+v", name, info.Config.Replicas, info.Cluster)
		}
	}

	phase("streams created")
	// Wake-ups queued before the crash.
	const wakes = 20
	for i := range wakes {
		publish(ctx, t, js, names.Wake("default", fmt.Sprintf("DEV%03d", i)), "wake-"+strconv.Itoa(i))
	}

	const tasks = 300
	leader := nc3.StreamLeader(t, names.TasksStream())
	for i := range tasks {
		if i == tasks/3 {
			phase(fmt.Sprintf("%d tasks queued, killing node %d", i, leader))
			nc3.Kill(t, leader)
		}
		publish(t.Context(), t, js, names.TaskQueue("default", fmt.Sprintf("DEV%03d", i%50)), "task-"+strconv.Itoa(i))
	}
	phase("every task queued")
	if now := nc3.StreamLeader(t, names.TasksStream()); now == leader {
		t.Fatalf("node %d was killed but still leads %s", leader, names.TasksStream())
	}

	// Every task once: the stream holds exactly the tasks, one message
	// each, whatever the retries sent twice.
	var info *jetstream.StreamInfo
	var s jetstream.Stream
	ask(t, "task stream info", func(ctx context.Context) (err error) {
		if s, err = js.Stream(ctx, names.TasksStream()); err != nil {
			return err
		}
		info, err = s.Info(ctx)
		return err
	})
	if info.State.Msgs != tasks {
		t.Fatalf("task stream holds %d messages, want %d", info.State.Msgs, tasks)
	}
	seen := map[string]int{}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq; seq++ {
		ask(t, fmt.Sprintf("get message %d", seq), func(ctx context.Context) error {
			m, err := s.GetMsg(ctx, seq)
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				return nil
			}
			if err == nil {
				seen[string(m.Data)]++
			}
			return err
		})
	}
	for i := range tasks {
		if n := seen["task-"+strconv.Itoa(i)]; n != 1 {
			t.Errorf("task %d is in the stream %d times", i, n)
		}
	}
	// Direct gets by subject, as session workers read their queue, work
	// on the nodes left.
	ask(t, "direct get after the crash", func(ctx context.Context) error {
		m, err := s.GetLastMsgForSubject(ctx, names.TaskQueue("default", "DEV007"))
		if err == nil && string(m.Data) != "task-"+strconv.Itoa(tasks-50+7) {
			t.Errorf("last task of DEV007 is %q", m.Data)
		}
		return err
	})

	phase("task stream checked")
	// The notifiers' consumer takes every wake-up queued before the crash.
	// As the notifier creates it at start (EnsureConsumer asks again).
	cctx, ccancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer ccancel()
	cons, err := natsbus.EnsureConsumer(cctx, js, names.WakeStream(), jetstream.ConsumerConfig{
		Durable: "notifier", AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second, Replicas: 3,
	})
	if err != nil {
		t.Fatalf("create the notifiers' consumer: %v", err)
	}
	got := map[string]bool{}
	testenv.WaitFor(t, 30*time.Second, func() error {
		batch, err := cons.FetchNoWait(wakes)
		if err != nil {
			return err
		}
		for msg := range batch.Messages() {
			got[string(msg.Data())] = true
			actx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			err := msg.DoubleAck(actx)
			cancel()
			if err != nil {
				return err
			}
		}
		if len(got) != wakes {
			return fmt.Errorf("%d of %d wake-ups taken", len(got), wakes)
		}
		return nil
	})
	phase("wake-ups taken")
	// A work queue: acknowledged wake-ups are gone.
	testenv.WaitFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		ws, err := js.Stream(ctx, names.WakeStream())
		if err != nil {
			return err
		}
		info, err := ws.Info(ctx)
		if err != nil {
			return err
		}
		if info.State.Msgs != 0 {
			return fmt.Errorf("%d wake-ups left in the stream", info.State.Msgs)
		}
		return nil
	})
	// Events still go in.
	publish(t.Context(), t, js, names.Event("default", "task.done", "DEV001"), "event-after")
}

// ask runs a JetStream API request with a deadline of its own, asking
// again while it fails, for up to 30 seconds.
func ask(t *testing.T, what string, req func(ctx context.Context) error) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		if err := req(ctx); err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	})
}

// publish publishes data on subj under the message id data, retrying until
// the stream acknowledges it: what a publisher does across a failover. A
// retry of a message the stream already took is dropped as a duplicate.
func publish(ctx context.Context, t *testing.T, js jetstream.JetStream, subj, data string) {
	t.Helper()
	testenv.WaitFor(t, 30*time.Second, func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.PublishMsg(pctx, &nats.Msg{Subject: subj, Data: []byte(data)}, jetstream.WithMsgID(data))
		return err
	})
}

// TestClusterConcurrentEnsure: several processes starting at once create
// the R3 streams together. nats-server 2.9 leaves some of those requests
// unanswered; EnsureStreams asks again, and every process gets its streams.
func TestClusterConcurrentEnsure(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster")
	}
	ncl := testenv.NATSCluster(t)
	opts := natsbus.DefaultStreamOptions
	opts.Replicas = 3
	errs := make(chan error, 4)
	for i := range 4 {
		go func() {
			ctx, cancel := context.WithTimeout(t.Context(), 45*time.Second)
			defer cancel()
			// Each on another node first, as processes of a deployment
			// spread over the cluster.
			urls := ncl.URLs()
			nc, js, err := natsbus.Connect(ctx, urls[i%len(urls)], "ensure-"+strconv.Itoa(i), 5*time.Second)
			if err != nil {
				errs <- err
				return
			}
			defer nc.Close()
			errs <- natsbus.EnsureStreams(ctx, js, natsbus.New("", ""), opts)
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
