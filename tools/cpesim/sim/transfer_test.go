package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// rangeServer serves one file with Range support and a SHA-256 ETag, as
// FleetACS's /files/ does, and records the Range and If-Range of each GET.
type rangeServer struct {
	srv *httptest.Server
	mu  sync.Mutex
	// data is what it serves; etag what it claims (the data's SHA-256
	// unless set).
	data, next []byte
	etag       string
	reqs       [][2]string
}

func newRangeServer(t *testing.T, data []byte) *rangeServer {
	rs := &rangeServer{data: data}
	rs.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rs.mu.Lock()
		rs.reqs = append(rs.reqs, [2]string{r.Header.Get("Range"), r.Header.Get("If-Range")})
		data, etag := rs.data, rs.etag
		if rs.next != nil {
			// The file changes after the first request.
			rs.data, rs.next = rs.next, nil
		}
		rs.mu.Unlock()
		if etag == "" {
			sum := sha256.Sum256(data)
			etag = `"` + hex.EncodeToString(sum[:]) + `"`
		}
		w.Header().Set("ETag", etag)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}))
	t.Cleanup(rs.srv.Close)
	return rs
}

func (rs *rangeServer) requests() [][2]string {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([][2]string(nil), rs.reqs...)
}

// downloadOnce runs one device that gets a firmware Download of url and
// returns its TransferComplete and the run's summary.
func downloadOnce(t *testing.T, url string, size uint32, interrupt int64) (*cwmp.TransferComplete, Summary) {
	t.Helper()
	acs := newTestACS(t, ConnCookie)
	acs.plan = func(inf *cwmp.Inform, n int) []cwmp.Message {
		if n == 1 {
			return msgs(&cwmp.Download{CommandKey: "dl", FileType: "1 Firmware Upgrade Image", URL: url, FileSize: size})
		}
		return nil
	}
	cfg := testConfig(t, acs)
	cfg.FetchTransfers = true
	cfg.FetchInterruptAfter = interrupt
	_, sum := runSim(t, cfg)
	_, _, cpe, _ := acs.snapshot()
	for _, m := range cpe {
		if tc, ok := m.(*cwmp.TransferComplete); ok {
			return tc, sum
		}
	}
	t.Fatalf("no TransferComplete among %v", cpe)
	return nil, sum
}

func firmwareBytes(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	return b
}

// TestDownloadResumedWithRange: a download cut after 1000 bytes resumes
// from byte 1000 with If-Range, and succeeds once size and checksum match.
func TestDownloadResumedWithRange(t *testing.T) {
	data := firmwareBytes(300_000)
	rs := newRangeServer(t, data)
	tc, sum := downloadOnce(t, rs.srv.URL+"/fw-2.0.bin", uint32(len(data)), 1000)
	if tc.FaultStruct.FaultCode != 0 {
		t.Fatalf("TransferComplete fault %+v", tc.FaultStruct)
	}
	reqs := rs.requests()
	sha := sha256.Sum256(data)
	if len(reqs) != 2 || reqs[0] != [2]string{"", ""} || reqs[1] != [2]string{"bytes=1000-", `"` + hex.EncodeToString(sha[:]) + `"`} {
		t.Fatalf("requests (Range, If-Range): %q", reqs)
	}
	if sum.DownloadsResumed != 1 || sum.TransfersCompleted != 1 {
		t.Errorf("summary: resumed %d, completed %d", sum.DownloadsResumed, sum.TransfersCompleted)
	}
}

// TestDownloadVerified: a file whose bytes do not match the server's
// SHA-256 ETag fails with 9018, one shorter than the Download's FileSize
// with 9017, and one changed between the cut and the resume (If-Range no
// longer matching) is fetched whole and succeeds.
func TestDownloadVerified(t *testing.T) {
	data := firmwareBytes(50_000)
	t.Run("corrupted", func(t *testing.T) {
		rs := newRangeServer(t, data)
		rs.etag = `"` + hex.EncodeToString(make([]byte, 32)) + `"`
		tc, _ := downloadOnce(t, rs.srv.URL+"/fw.bin", 0, 0)
		if tc.FaultStruct.FaultCode != cwmp.FaultFileCorrupted {
			t.Fatalf("fault %+v, want 9018", tc.FaultStruct)
		}
	})
	t.Run("corrupted after a resume", func(t *testing.T) {
		rs := newRangeServer(t, data)
		rs.etag = `"` + hex.EncodeToString(make([]byte, 32)) + `"`
		tc, _ := downloadOnce(t, rs.srv.URL+"/fw.bin", 0, 100)
		if tc.FaultStruct.FaultCode != cwmp.FaultFileCorrupted || len(rs.requests()) != 2 {
			t.Fatalf("fault %+v after %d requests, want 9018 after 2", tc.FaultStruct, len(rs.requests()))
		}
	})
	t.Run("short", func(t *testing.T) {
		rs := newRangeServer(t, data)
		tc, _ := downloadOnce(t, rs.srv.URL+"/fw.bin", uint32(len(data)+1), 0)
		if tc.FaultStruct.FaultCode != cwmp.FaultDownloadIncomplete {
			t.Fatalf("fault %+v, want 9017", tc.FaultStruct)
		}
	})
	t.Run("changed during the cut", func(t *testing.T) {
		rs := newRangeServer(t, data)
		rs.next = firmwareBytes(60_000)[10_000:]
		tc, sum := downloadOnce(t, rs.srv.URL+"/fw.bin", 0, 100)
		reqs := rs.requests()
		if tc.FaultStruct.FaultCode != 0 || len(reqs) != 2 || reqs[1][0] != "bytes=100-" || sum.DownloadsResumed != 1 {
			t.Fatalf("fault %+v, requests %q", tc.FaultStruct, reqs)
		}
	})
	t.Run("file smaller than the cut", func(t *testing.T) {
		rs := newRangeServer(t, data[:10])
		tc, sum := downloadOnce(t, rs.srv.URL+"/fw.bin", 10, 1000)
		if tc.FaultStruct.FaultCode != 0 || len(rs.requests()) != 1 || sum.DownloadsResumed != 0 {
			t.Fatalf("fault %+v, %d requests", tc.FaultStruct, len(rs.requests()))
		}
	})
}
