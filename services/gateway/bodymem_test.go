package gateway

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"testing"
	"testing/iotest"
)

// stalled is a body that stopped arriving: the read deadline ran out.
type stalled struct{}

func (stalled) Read([]byte) (int, error) { return 0, os.ErrDeadlineExceeded }

// The memory of a body with a Content-Length follows what arrives, not what
// the header declares: a client that declares 4 MiB and sends 100 bytes,
// before authentication, must not make the gateway hold 4 MiB until the
// read timeout.
func TestBodyMemoryFollowsArrival(t *testing.T) {
	const declared, rounds = 4 << 20, 16
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	for range rounds {
		_, err := readLimited(io.MultiReader(bytes.NewReader(make([]byte, 100)), stalled{}), declared, declared)
		var be *bodyError
		if !errors.As(err, &be) || be.status != http.StatusRequestTimeout {
			t.Fatalf("stalled body: %v, want 408", err)
		}
	}
	runtime.ReadMemStats(&after)
	if got := after.TotalAlloc - before.TotalAlloc; got > rounds*declared/8 {
		t.Fatalf("%d stalled bodies declaring %d bytes and sending 100 allocated %d bytes", rounds, declared, got)
	}
}

// Bodies arriving in pieces of any size are read whole, and a short one is
// a 400, whatever their size against the first allocation.
func TestBodyReadInPieces(t *testing.T) {
	for _, size := range []int{1, 100, firstBodyChunk - 1, firstBodyChunk, firstBodyChunk + 1, 3*firstBodyChunk + 7, 1 << 20} {
		body := make([]byte, size)
		for i := range body {
			body[i] = byte(rand.N(256))
		}
		for name, r := range map[string]io.Reader{
			"whole":    bytes.NewReader(body),
			"one byte": iotest.OneByteReader(bytes.NewReader(body)),
			"half":     iotest.HalfReader(bytes.NewReader(body)),
			"data+EOF": iotest.DataErrReader(bytes.NewReader(body)),
		} {
			got, err := readLimited(r, int64(size), 4<<20)
			if err != nil || !bytes.Equal(got, body) {
				t.Fatalf("%d bytes, %s: %d bytes back, %v", size, name, len(got), err)
			}
		}
		_, err := readLimited(bytes.NewReader(body[:size-1]), int64(size), 4<<20)
		var be *bodyError
		if !errors.As(err, &be) || be.status != http.StatusBadRequest {
			t.Fatalf("%d bytes declared, one short: %v, want 400", size, err)
		}
	}
}
