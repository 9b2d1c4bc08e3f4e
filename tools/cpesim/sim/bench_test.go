package sim

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stubACS is a lean ACS for benchmarks: a TCP server that answers with
// canned bytes, the way FleetACS's gateway frames them, so that nearly all
// the CPU a benchmark measures is the simulator's. It decides by the body
// alone: an Inform gets an InformResponse and a session cookie, an empty
// POST a GetParameterValues of Device.DeviceInfo.UpTime (or 204 when
// noTask is set), anything else 204.
type stubACS struct {
	ln     net.Listener
	noTask bool
	wg     sync.WaitGroup
	cookie atomic.Int64
	// bad counts requests the stub could not frame.
	bad atomic.Int64
}

const stubInformResponse = `<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">cpesim-1</cwmp:ID><cwmp:UseCWMPVersion soap-env:mustUnderstand="1">1.4</cwmp:UseCWMPVersion></soap-env:Header><soap-env:Body><cwmp:InformResponse><MaxEnvelopes>1</MaxEnvelopes></cwmp:InformResponse></soap-env:Body></soap-env:Envelope>`

const stubGPV = `<soap-env:Envelope xmlns:soap-env="http://schemas.xmlsoap.org/soap/envelope/" xmlns:soap-enc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:cwmp="urn:dslforum-org:cwmp-1-2"><soap-env:Header><cwmp:ID soap-env:mustUnderstand="1">fleetacs-1f3a</cwmp:ID></soap-env:Header><soap-env:Body><cwmp:GetParameterValues><ParameterNames soap-enc:arrayType="xsd:string[1]"><string>Device.DeviceInfo.UpTime</string></ParameterNames></cwmp:GetParameterValues></soap-env:Body></soap-env:Envelope>`

func startStubACS(tb testing.TB, noTask bool) *stubACS {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	a := &stubACS{ln: ln, noTask: noTask}
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			a.wg.Add(1)
			go func() {
				defer a.wg.Done()
				a.serve(c)
			}()
		}
	}()
	tb.Cleanup(func() {
		ln.Close()
		a.wg.Wait()
		if n := a.bad.Load(); n > 0 {
			tb.Errorf("stub ACS: %d requests it could not frame", n)
		}
	})
	return a
}

func (a *stubACS) url() string { return "http://" + a.ln.Addr().String() + "/" }

func (a *stubACS) serve(c net.Conn) {
	defer c.Close()
	br := bufio.NewReaderSize(c, 16<<10)
	bw := bufio.NewWriterSize(c, 4<<10)
	var body []byte
	for {
		n := -1
		for first := true; ; first = false {
			line, err := br.ReadSlice('\n')
			if err != nil {
				if !first || !errors.Is(err, io.EOF) {
					a.bad.Add(1)
				}
				return
			}
			if len(line) <= 2 {
				break
			}
			if v, ok := bytes.CutPrefix(line, []byte("Content-Length: ")); ok {
				n, _ = strconv.Atoi(strings.TrimSpace(string(v)))
			}
		}
		if n < 0 {
			a.bad.Add(1)
			return
		}
		if cap(body) < n {
			body = make([]byte, n)
		}
		body = body[:n]
		if _, err := io.ReadFull(br, body); err != nil {
			a.bad.Add(1)
			return
		}
		switch {
		case bytes.Contains(body, []byte("<cwmp:Inform>")):
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(stubInformResponse)) +
				"\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nSet-Cookie: session=S" +
				strconv.FormatInt(a.cookie.Add(1), 10) + "; Path=/\r\nDate: Mon, 07 Dec 2026 05:15:15 GMT\r\n\r\n")
			bw.WriteString(stubInformResponse)
		case n == 0 && !a.noTask:
			bw.WriteString("HTTP/1.1 200 OK\r\nContent-Length: " + strconv.Itoa(len(stubGPV)) +
				"\r\nContent-Type: text/xml; charset=\"utf-8\"\r\nDate: Mon, 07 Dec 2026 05:15:15 GMT\r\n\r\n")
			bw.WriteString(stubGPV)
		default:
			bw.WriteString("HTTP/1.1 204 No Content\r\nDate: Mon, 07 Dec 2026 05:15:15 GMT\r\n\r\n")
		}
		if bw.Flush() != nil {
			return
		}
	}
}

// benchmarkStubSessions runs b.N closed-loop periodic sessions of known
// devices against the stub ACS, as scripts/bench-task-delivery.sh runs
// cpesim, and reports the process's CPU per session (the stub's share
// included: it writes canned bytes) and the allocations per session.
func benchmarkStubSessions(b *testing.B, noTask bool) {
	acs := startStubACS(b, noTask)
	s, err := New(Config{URL: acs.url(), Devices: 1000, SerialPrefix: "TP", Known: true, Sessions: b.N,
		Concurrency: 16, Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	// The CPU is measured here rather than taken from the summary, so that
	// this file measures builds from before the summary had it too.
	u0, s0, _ := processCPU()
	sum, err := s.Run(context.Background())
	u1, s1, _ := processCPU()
	b.StopTimer()
	if err != nil || sum.SessionsOK != int64(b.N) {
		b.Fatalf("run: %v, ok %d of %d, errors %v %v", err, sum.SessionsOK, b.N, sum.Errors, sum.FirstErrors)
	}
	if !noTask && sum.Requests["GetParameterValues"] != int64(b.N) {
		b.Fatalf("GetParameterValues answered %d times in %d sessions", sum.Requests["GetParameterValues"], b.N)
	}
	b.ReportMetric(float64(u1-u0+s1-s0)/float64(time.Microsecond)/float64(b.N), "cpu-µs/session")
	b.ReportMetric(float64(sum.SessionsOK)/sum.Elapsed.Seconds(), "sessions/s")
}

// BenchmarkStubSessionGPV: Inform, InformResponse, empty POST, a
// GetParameterValues of UpTime, its response, 204 (a task session).
func BenchmarkStubSessionGPV(b *testing.B) { benchmarkStubSessions(b, false) }

// BenchmarkStubSessionPeriodic: Inform, InformResponse, empty POST, 204.
func BenchmarkStubSessionPeriodic(b *testing.B) { benchmarkStubSessions(b, true) }

// TestCancelEndsRoundTrips: cancelling the run ends the round trips
// waiting on an ACS that never answers at once (waitFor allows 5 s), not
// after the one-minute exchange timeout; the sessions count as canceled.
func TestCancelEndsRoundTrips(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests := make(chan struct{}, 16)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				// Read the request, answer nothing, hold the connection.
				if _, err := bufio.NewReader(c).ReadString('\n'); err == nil {
					requests <- struct{}{}
				}
				io.Copy(io.Discard, c)
			})
		}
	})
	s, err := New(Config{URL: "http://" + ln.Addr().String() + "/", Devices: 4, BootStorm: true,
		Concurrency: 4, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	cancel, result := runInBackground(s)
	for range 4 {
		waitFor(t, requests)
	}
	cancel()
	sum := waitFor(t, result)
	if sum.SessionsCanceled != 4 || sum.SessionsFailed != 0 || sum.SessionsOK != 0 {
		t.Errorf("started %d ok %d failed %d canceled %d errors %v", sum.SessionsStarted, sum.SessionsOK,
			sum.SessionsFailed, sum.SessionsCanceled, sum.FirstErrors)
	}
}
