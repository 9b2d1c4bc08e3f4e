package natsbus_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fleetacs/fleetacs/pkg/natsbus"
	"github.com/fleetacs/fleetacs/pkg/testenv"
)

// Messages added while no stream takes their subject are published, in
// order and once each, when one does; a message whose earlier publish the
// stream did take is dropped by the stream as a duplicate.
func TestRedo(t *testing.T) {
	_, js, _ := connectTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := testenv.UniqueName(t)
	msg := func(key, id string) *nats.Msg {
		m := nats.NewMsg(u + "." + key)
		m.Data = []byte(id)
		m.Header.Set(jetstream.MsgIDHeader, id)
		return m
	}
	// The stream first takes key c only, and c1 is stored before Run can
	// publish anything, so the order it holds is fixed.
	cfg := jetstream.StreamConfig{Name: strings.ToUpper(u), Subjects: []string{u + ".c"}, Duplicates: time.Minute}
	st, err := js.CreateStream(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = js.DeleteStream(context.Background(), cfg.Name) }()
	if _, err := js.PublishMsg(ctx, msg("c", "c1")); err != nil {
		t.Fatal(err)
	}
	r := natsbus.NewRedo(js, 10, nil)
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	for _, id := range []string{"a1", "b1", "a2"} {
		if _, dropped := r.Add(id[:1], msg(id[:1], id)); dropped {
			t.Fatalf("%s dropped", id)
		}
	}
	if !r.Waiting("a") || !r.Waiting("b") || r.Waiting("c") {
		t.Fatal("Waiting per key wrong")
	}
	// Run may try before the stream takes a and b, fail and back off.
	cfg.Subjects = []string{u + ".>"}
	if _, err := js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	// An event whose first publish the stream took, added again.
	r.Add("c", msg("c", "c1"))
	testenv.WaitFor(t, 10*time.Second, func() error {
		if n := r.Len(); n > 0 {
			return fmt.Errorf("%d messages still waiting", n)
		}
		return nil
	})
	var got []string
	for seq := uint64(1); ; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			break
		}
		got = append(got, string(m.Data))
	}
	if strings.Join(got, ",") != "c1,a1,b1,a2" {
		t.Fatalf("stream holds %v", got)
	}
	if r.Waiting("a") || r.Dropped() != 0 {
		t.Fatalf("after: waiting a %v, dropped %d", r.Waiting("a"), r.Dropped())
	}
}

// Beyond its bound the oldest message goes, counted; the per-key
// bookkeeping stays exact.
func TestRedoBound(t *testing.T) {
	_, js, _ := connectTest(t)
	r := natsbus.NewRedo(js, 2, nil)
	r.Add("a", nats.NewMsg("x.a"))
	r.Add("b", nats.NewMsg("x.b"))
	d, dropped := r.Add("c", nats.NewMsg("x.c"))
	if !dropped || d.Subject != "x.a" || r.Dropped() != 1 || r.Len() != 2 {
		t.Fatalf("dropped %v %v, count %d, len %d", d, dropped, r.Dropped(), r.Len())
	}
	if r.Waiting("a") || !r.Waiting("b") || !r.Waiting("c") {
		t.Fatal("Waiting per key wrong after a drop")
	}
}
