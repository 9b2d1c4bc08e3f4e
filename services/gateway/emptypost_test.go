package gateway

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// TestEmptyPOSTInSession: the CPE's empty POST that asks for the ACS's
// request, in whatever framing real CPEs use (docs/protocol.md §4.1, §13
// input 8): Content-Length: 0, a chunked body without data, and a
// Content-Encoding with no data at all. Each reaches the worker as the
// empty body of the session's exchange and is answered with its request.
func TestEmptyPOSTInSession(t *testing.T) {
	for _, tt := range []struct {
		name string
		req  func() *http.Request
	}{
		{"Content-Length 0", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", http.NoBody)
			r.ContentLength = 0
			return r
		}},
		{"chunked without data", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", strings.NewReader(""))
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
			return r
		}},
		{"gzip without data", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", http.NoBody)
			r.ContentLength = 0
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}},
		{"chunked gzip without data", func() *http.Request {
			r, _ := http.NewRequest(http.MethodPost, "http://acs.example/cwmp", strings.NewReader(""))
			r.ContentLength = -1
			r.TransferEncoding = []string{"chunked"}
			r.Header.Set("Content-Encoding", "gzip")
			return r
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := startGateway(t, testConfig(), nil)
			c, first := h.openSession("SN1", "2 PERIODIC")
			if first.StatusCode != http.StatusOK {
				t.Fatalf("Inform: %d", first.StatusCode)
			}
			a := c.do(tt.req())
			if a.StatusCode != http.StatusOK {
				t.Fatalf("empty POST: %d %s", a.StatusCode, a.body)
			}
			body := a.body
			if a.Header.Get("Content-Encoding") == "gzip" {
				// The gateway answers in the CPE's encoding.
				zr, err := gzip.NewReader(bytes.NewReader(body))
				if err != nil {
					t.Fatal(err)
				}
				if body, err = io.ReadAll(zr); err != nil {
					t.Fatal(err)
				}
			}
			env, err := cwmp.Decode(body)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := env.Body.(*cwmp.GetParameterValues); !ok {
				t.Fatalf("answered %s", env.Body.Method())
			}
			seen := h.worker.seen()
			if last := seen[len(seen)-1]; last.NewSession || len(last.Body) != 0 {
				t.Fatalf("the worker got %+v", last)
			}
			resp, err := cwmp.Encode(&cwmp.Envelope{Namespace: env.Namespace, Header: env.Header, Body: &cwmp.GetParameterValuesResponse{}})
			if err != nil {
				t.Fatal(err)
			}
			if a := c.post(resp); a.StatusCode != http.StatusNoContent || len(a.body) != 0 {
				t.Fatalf("answer: %d %s", a.StatusCode, a.body)
			}
		})
	}
}
