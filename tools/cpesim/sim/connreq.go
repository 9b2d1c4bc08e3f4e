package sim

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// crServer accepts HTTP connection requests (docs/protocol.md §8.1): an
// authenticated GET to a device's ConnectionRequestURL makes the device
// start a session with 6 CONNECTION REQUEST. Credentials are the device's
// ConnectionRequestUsername/Password, checked with Digest.
type crServer struct {
	sim    *Simulator
	srv    *http.Server
	digest *digestServer
	lns    []net.Listener
	// byPort maps a per-device listener's port, byPath a shared
	// listener's path, to its device.
	byPort map[int]*Device
	byPath map[string]*Device
	wg     sync.WaitGroup
}

// startConnReq opens the listeners and sets every device's
// ConnectionRequestURL.
func (s *Simulator) startConnReq(ctx context.Context) (*crServer, error) {
	cfg := &s.cfg
	cr := &crServer{sim: s, digest: newDigestServer("cpesim"), byPort: map[int]*Device{}, byPath: map[string]*Device{}}
	cr.srv = &http.Server{
		Handler:           cr,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	listen := func() (net.Listener, int, error) {
		ln, err := net.Listen("tcp", net.JoinHostPort(cfg.ConnReqAddr, "0"))
		if err != nil {
			return nil, 0, fmt.Errorf("listen for connection requests: %w", err)
		}
		cr.lns = append(cr.lns, ln)
		return ln, ln.Addr().(*net.TCPAddr).Port, nil
	}
	base := func(port int) string {
		return "http://" + net.JoinHostPort(cfg.ConnReqHost, strconv.Itoa(port))
	}
	switch cfg.ConnReq {
	case ConnReqPerDevice:
		for _, d := range s.devices {
			_, port, err := listen()
			if err != nil {
				cr.close()
				return nil, err
			}
			cr.byPort[port] = d
			path := "/" + randomToken(8)
			cr.byPath[path] = d
			d.setCRURL(base(port) + path)
		}
	case ConnReqShared:
		_, port, err := listen()
		if err != nil {
			return nil, err
		}
		for _, d := range s.devices {
			path := "/cr/" + randomToken(8)
			cr.byPath[path] = d
			d.setCRURL(base(port) + path)
		}
	}
	for _, ln := range cr.lns {
		cr.wg.Go(func() { cr.srv.Serve(ln) })
	}
	return cr, nil
}

func (d *Device) setCRURL(u string) {
	d.mu.Lock()
	d.crURL = u
	d.mu.Unlock()
}

func (cr *crServer) close() {
	cr.srv.Close()
	for _, ln := range cr.lns {
		ln.Close()
	}
	cr.wg.Wait()
}

// ServeHTTP answers one connection request.
func (cr *crServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	st := cr.sim.stats
	st.crReceived.Add(1)
	d := cr.byPath[r.URL.Path]
	if d == nil && cfgPerDevice(cr) {
		if la, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok && r.URL.Path == "/" {
			d = cr.byPort[la.Port]
		}
	}
	if d == nil {
		st.crRejected.Add(1)
		http.NotFound(w, r)
		return
	}
	if r.Method != http.MethodGet {
		st.crRejected.Add(1)
		w.Header().Set("Allow", http.MethodGet)
		w.WriteHeader(http.StatusMethodNotAllowed)
		return
	}
	now := time.Now()
	user, pass := d.ConnectionRequestCredentials()
	authz := r.Header.Get("Authorization")
	if authz == "" {
		w.Header().Set("WWW-Authenticate", cr.digest.challengeHeader(now, false))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	ok, stale := cr.digest.verify(authz, r.Method, user, pass, now)
	if !ok {
		if !stale {
			st.crRejected.Add(1)
		}
		w.Header().Set("WWW-Authenticate", cr.digest.challengeHeader(now, stale))
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	st.crAccepted.Add(1)
	d.mu.Lock()
	d.addEvent(evConnReq, "")
	d.mu.Unlock()
	cr.sim.sched.wake(d, now)
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusOK)
}

func cfgPerDevice(cr *crServer) bool { return cr.sim.cfg.ConnReq == ConnReqPerDevice }
