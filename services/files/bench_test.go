package files

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

// wrappedListener hands out connections that hide the *net.TCPConn, as the
// gateway's CWMP listener does (its cwmpConn and connection limits): the
// response body is then copied through user space instead of sendfile.
type wrappedListener struct{ net.Listener }

type wrappedConn struct{ net.Conn }

func (l wrappedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return wrappedConn{c}, nil
}

// BenchmarkRangeServe measures the bytes/s /files/ serves on loopback to
// many concurrent clients, each asking for 1 MiB ranges at random offsets
// of a 64 MiB firmware image with its signed URL (docs/files.md,
// BENCHMARKS.md). "sendfile": a plain listener; "gateway-conn": connections
// wrapped as the gateway's are, the figure for /files/ on the CWMP
// listener.
func BenchmarkRangeServe(b *testing.B) {
	for _, mode := range []string{"sendfile", "gateway-conn"} {
		b.Run(mode, func(b *testing.B) {
			h := newHarness(b, harnessOpts{})
			size := 64 << 20
			data := content(size, 99)
			f, err := h.upload(b, h.operator, "", &filesv1.UploadFileHeader{Name: "bench.bin", FileType: "1 Firmware Upgrade Image", Version: "1"}, data, 1<<20)
			if err != nil {
				b.Fatal(err)
			}
			path, err := h.svc.SignPath("default", f.GetId(), device, time.Hour)
			if err != nil {
				b.Fatal(err)
			}
			srv := httptest.NewUnstartedServer(h.svc.DownloadHandler())
			if mode == "gateway-conn" {
				srv.Listener = wrappedListener{srv.Listener}
			}
			srv.Start()
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr}
			const chunk = 1 << 20
			b.SetBytes(chunk)
			b.SetParallelism(16) // 16 clients per core
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				r := rand.New(rand.NewPCG(rand.Uint64(), 1))
				buf := make([]byte, 256<<10)
				for pb.Next() {
					off := r.IntN(size - chunk)
					req, _ := http.NewRequest("GET", srv.URL+path, nil)
					req.Header.Set("Range", fmt.Sprintf("bytes=%d-%d", off, off+chunk-1))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					n, err := io.CopyBuffer(io.Discard, resp.Body, buf)
					resp.Body.Close()
					if err != nil || n != chunk || resp.StatusCode != http.StatusPartialContent {
						b.Errorf("range: %d, %d bytes, %v", resp.StatusCode, n, err)
						return
					}
				}
			})
		})
	}
}
