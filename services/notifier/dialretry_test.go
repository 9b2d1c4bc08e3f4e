package notifier

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptrace"
	"sync"
	"testing"

	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// TestAuthGetRetriesFailedDial: a CPE that closes the connection after its
// 401 and is not listening when the answer's new connection is dialled
// (a stack restarting its listener) gets the answer on a second dial
// (authGet); the request that reached nobody is the only one repeated.
func TestAuthGetRetriesFailedDial(t *testing.T) {
	const user, pass = "cr-user", "cr-pass"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	challenge := map[string]string{"realm": "cpe", "nonce": "n-dial", "qop": "auth"}

	// The first connection: the challenge, with the listener closed
	// before it is written, so the answer's dial finds nobody.
	first := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		ln.Close()
		if err != nil {
			first <- err
			return
		}
		defer c.Close()
		if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
			first <- err
			return
		}
		_, err = c.Write([]byte("HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Digest realm=\"cpe\", nonce=\"n-dial\", qop=\"auth\"\r\n" +
			"Content-Length: 0\r\nConnection: close\r\n\r\n"))
		first <- err
	}()

	// The failed dial listens again on the same port, so the retry finds
	// the CPE; that connection checks the answer.
	var (
		mu         sync.Mutex
		failed     int
		connected  int
		second     = make(chan error, 1)
		relistened bool
	)
	serveAnswer := func(ln2 net.Listener) {
		c, err := ln2.Accept()
		ln2.Close()
		if err != nil {
			second <- err
			return
		}
		defer c.Close()
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			second <- err
			return
		}
		if err := checkDigest(req.Header.Get("Authorization"), challenge, user, pass, http.MethodGet, req.RequestURI); err != nil {
			_, _ = c.Write([]byte("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n"))
			second <- err
			return
		}
		_, err = c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))
		second <- err
	}
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		ConnectDone: func(_, _ string, err error) {
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				connected++
				return
			}
			failed++
			if relistened {
				return
			}
			relistened = true
			ln2, lerr := net.Listen("tcp", addr)
			if lerr != nil {
				second <- lerr
				return
			}
			go serveAnswer(ln2)
		},
	})

	s := newService(t, testConfig(), Deps{})
	r := s.sendHTTP(ctx, "http://"+addr+"/cr", user, pass)
	if err := <-first; err != nil {
		t.Fatalf("the challenge's connection: %v", err)
	}
	if r.status != tasksv1.WakeStatus_WAKE_STATUS_SENT {
		t.Fatalf("got %v %q, want sent after the second dial", r.status, r.detail)
	}
	if err := <-second; err != nil {
		t.Fatalf("the answer's connection: %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if failed != 1 || connected != 2 {
		t.Fatalf("%d failed and %d successful connects, want 1 and 2 (the challenge's, the retried answer's)", failed, connected)
	}
}
