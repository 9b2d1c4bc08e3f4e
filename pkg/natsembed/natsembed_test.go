package natsembed

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEmbeddedJetStreamRoundTrip(t *testing.T) {
	s := New("127.0.0.1", -1, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	nc, err := nats.Connect(s.URL())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	tctx, tcancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer tcancel()
	if _, err := js.CreateStream(tctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish(tctx, "t.dev1", []byte("task")); err != nil {
		t.Fatal(err)
	}
	cons, err := js.CreateOrUpdateConsumer(tctx, "T", jetstream.ConsumerConfig{FilterSubject: "t.dev1"})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if string(msg.Data()) != "task" {
		t.Fatalf("got %q", msg.Data())
	}
	nc.Close()
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestStoreDirPrivate: the store directory is the owner's alone, also when
// it existed more open.
func TestStoreDirPrivate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "nats")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s := New("127.0.0.1", -1, dir)
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Run(ctx) }()
	select {
	case <-s.Ready():
	case err := <-errc:
		t.Fatalf("Run: %v", err)
	}
	fi, err := os.Stat(dir)
	cancel()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("store dir mode %v, %v; want 700", fi.Mode().Perm(), err)
	}
}
