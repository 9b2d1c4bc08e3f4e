package sim

import (
	"encoding/json"
	"fmt"
	"io"
	"math/bits"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// histogram records durations in microseconds in log-linear buckets: exact
// below 64 µs, then 32 buckets per power of two (about 3% resolution), up
// to 2^40 µs. Recording is one atomic add, so sessions on every core record
// without a lock.
type histogram struct {
	counts [histBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64
	max    atomic.Int64
}

const (
	histSub     = 32
	histBuckets = histSub*2 + 35*histSub
)

func histIndex(us uint64) int {
	if us < 2*histSub {
		return int(us)
	}
	shift := bits.Len64(us) - 6 // us>>shift is in [32, 63]
	idx := histSub*shift + int(us>>uint(shift))
	if idx >= histBuckets {
		return histBuckets - 1
	}
	return idx
}

// histValue is the upper bound of a bucket in microseconds.
func histValue(idx int) uint64 {
	if idx < 2*histSub {
		return uint64(idx)
	}
	shift := idx/histSub - 1
	m := uint64(idx - histSub*shift)
	return (m+1)<<uint(shift) - 1
}

func (h *histogram) record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	h.counts[histIndex(uint64(us))].Add(1)
	h.n.Add(1)
	h.sum.Add(us)
	for {
		m := h.max.Load()
		if us <= m || h.max.CompareAndSwap(m, us) {
			break
		}
	}
}

// Latency summarises a latency distribution. Percentiles are bucket upper
// bounds (within about 3%); Max is exact.
type Latency struct {
	Count int64
	Mean  time.Duration
	P50   time.Duration
	P90   time.Duration
	P99   time.Duration
	Max   time.Duration
}

func (h *histogram) summary() Latency {
	l := Latency{Count: h.n.Load(), Max: time.Duration(h.max.Load()) * time.Microsecond}
	if l.Count == 0 {
		return l
	}
	l.Mean = time.Duration(h.sum.Load()/l.Count) * time.Microsecond
	targets := []struct {
		q   float64
		out *time.Duration
	}{{0.50, &l.P50}, {0.90, &l.P90}, {0.99, &l.P99}}
	var seen int64
	t := 0
	for i := 0; i < histBuckets && t < len(targets); i++ {
		seen += h.counts[i].Load()
		for t < len(targets) && float64(seen) >= targets[t].q*float64(l.Count) {
			v := time.Duration(histValue(i)) * time.Microsecond
			if v > l.Max {
				v = l.Max
			}
			*targets[t].out = v
			t++
		}
	}
	return l
}

// MarshalJSON writes the durations as milliseconds.
func (l Latency) MarshalJSON() ([]byte, error) {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return json.Marshal(struct {
		Count int64   `json:"count"`
		Mean  float64 `json:"mean_ms"`
		P50   float64 `json:"p50_ms"`
		P90   float64 `json:"p90_ms"`
		P99   float64 `json:"p99_ms"`
		Max   float64 `json:"max_ms"`
	}{l.Count, ms(l.Mean), ms(l.P50), ms(l.P90), ms(l.P99), ms(l.Max)})
}

// stats collects what a run does.
type stats struct {
	started, ok, failed, shed atomic.Int64
	canceled                  atomic.Int64
	retries, authChallenges   atomic.Int64
	redirects, late           atomic.Int64
	transfers                 atomic.Int64
	resumed                   atomic.Int64
	retryAfterWait            atomic.Int64 // ns of Retry-After honoured
	crReceived, crAccepted    atomic.Int64
	crRejected                atomic.Int64
	status                    [600]atomic.Int64
	session, exchange         histogram

	// answered is set by the first HTTP answer of the run.
	answered atomic.Bool

	mu     sync.Mutex
	errors map[string]int64
	// firstErrors holds the first error of each kind, for people.
	firstErrors map[string]string
	rpcs        map[string]int64
	faults      map[string]int64
	events      map[string]int64
}

func newStats() *stats {
	return &stats{errors: map[string]int64{}, firstErrors: map[string]string{}, rpcs: map[string]int64{}, faults: map[string]int64{}, events: map[string]int64{}}
}

// failure counts a failed session by kind and keeps the first error of
// each kind.
func (s *stats) failure(kind string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errors[kind]++
	if _, ok := s.firstErrors[kind]; !ok && err != nil {
		s.firstErrors[kind] = err.Error()
	}
}

// firstError returns the first error of a kind, if there was one.
func (s *stats) firstError(kind string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.firstErrors[kind]
	return e, ok
}

func (s *stats) httpStatus(code int) {
	s.answered.Store(true)
	if code >= 0 && code < len(s.status) {
		s.status[code].Add(1)
	}
}

func (s *stats) count(m map[string]int64, key string) {
	s.mu.Lock()
	m[key]++
	s.mu.Unlock()
}

// Summary is the outcome of a run.
type Summary struct {
	Devices int
	Model   DataModel
	// Elapsed is the wall time of the run.
	Elapsed time.Duration
	// Sessions started, ended normally, failed, refused with 503 (shed,
	// not counted as failed) and cut short by the end of the run
	// (canceled, not counted as failed either).
	SessionsStarted  int64
	SessionsOK       int64
	SessionsFailed   int64
	SessionsShed     int64
	SessionsCanceled int64
	// SessionsPerSecond is SessionsOK over Elapsed.
	SessionsPerSecond float64
	// SessionLatency covers whole sessions (from the intended start in an
	// open loop, so a lagging simulator shows up as latency), Exchange one
	// HTTP round trip each.
	SessionLatency  Latency
	ExchangeLatency Latency
	// HTTPStatus counts responses by status code; HTTP503 repeats the 503
	// count.
	HTTPStatus map[int]int64
	HTTP503    int64
	// Retries counts sessions retried after a failure or a 503, and Informs
	// resent after fault 8005.
	Retries int64
	// RetryAfterWait is the total back-off the ACS asked for with
	// Retry-After (before TimeScale and MaxRetryAfter).
	RetryAfterWait time.Duration
	AuthChallenges int64
	Redirects      int64
	// LateStarts counts sessions that started more than 10 ms after their
	// intended time: the simulator (or its machine) could not keep up.
	LateStarts int64
	// Errors counts failed sessions by kind ("http_500", "timeout",
	// "connect", "auth", "decode", "protocol", ...), and FirstErrors
	// tells the first error of each kind.
	Errors      map[string]int64
	FirstErrors map[string]string
	// Requests counts the ACS requests answered, by method; Faults the
	// faults the devices returned, by code.
	Requests map[string]int64
	Faults   map[string]int64
	// Events counts the Inform events sent, by code.
	Events map[string]int64
	// TransfersCompleted counts finished transfers (TransferComplete owed).
	TransfersCompleted int64
	// DownloadsResumed counts downloads resumed with a Range request
	// after a cut.
	DownloadsResumed int64
	// Connection requests received, accepted (session triggered) and
	// rejected (bad credentials).
	ConnReqReceived int64
	ConnReqAccepted int64
	ConnReqRejected int64
	// CPUUser and CPUSystem are the CPU time the whole process used during
	// the run (getrusage; zero where it is not measured), and
	// CPUPerSession their sum over the sessions started, in microseconds:
	// on a machine shared with the ACS, what the simulator takes from it.
	// CPUMeasured reports whether they were measured.
	CPUUser       time.Duration
	CPUSystem     time.Duration
	CPUPerSession float64
	CPUMeasured   bool
}

// setCPU records the process's CPU time over the run.
func (s *Summary) setCPU(user, system time.Duration) {
	s.CPUUser, s.CPUSystem, s.CPUMeasured = user, system, true
	if s.SessionsStarted > 0 {
		s.CPUPerSession = float64(user+system) / float64(time.Microsecond) / float64(s.SessionsStarted)
	}
}

// ErrorCount is the number of failed sessions.
func (s *Summary) ErrorCount() int64 { return s.SessionsFailed }

func (s *stats) summary(devices int, model DataModel, elapsed time.Duration) Summary {
	out := Summary{
		Devices:            devices,
		Model:              model,
		Elapsed:            elapsed,
		SessionsStarted:    s.started.Load(),
		SessionsOK:         s.ok.Load(),
		SessionsFailed:     s.failed.Load(),
		SessionsShed:       s.shed.Load(),
		SessionsCanceled:   s.canceled.Load(),
		SessionLatency:     s.session.summary(),
		ExchangeLatency:    s.exchange.summary(),
		HTTPStatus:         map[int]int64{},
		HTTP503:            s.status[503].Load(),
		Retries:            s.retries.Load(),
		RetryAfterWait:     time.Duration(s.retryAfterWait.Load()),
		AuthChallenges:     s.authChallenges.Load(),
		Redirects:          s.redirects.Load(),
		LateStarts:         s.late.Load(),
		TransfersCompleted: s.transfers.Load(),
		DownloadsResumed:   s.resumed.Load(),
		ConnReqReceived:    s.crReceived.Load(),
		ConnReqAccepted:    s.crAccepted.Load(),
		ConnReqRejected:    s.crRejected.Load(),
	}
	if elapsed > 0 {
		out.SessionsPerSecond = float64(out.SessionsOK) / elapsed.Seconds()
	}
	for code := range s.status {
		if n := s.status[code].Load(); n > 0 {
			out.HTTPStatus[code] = n
		}
	}
	s.mu.Lock()
	out.Errors = copyCounts(s.errors)
	out.FirstErrors = make(map[string]string, len(s.firstErrors))
	for k, v := range s.firstErrors {
		out.FirstErrors[k] = v
	}
	out.Requests = copyCounts(s.rpcs)
	out.Faults = copyCounts(s.faults)
	out.Events = copyCounts(s.events)
	s.mu.Unlock()
	return out
}

func copyCounts(m map[string]int64) map[string]int64 {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// MarshalJSON writes the summary with snake_case keys and seconds.
func (s Summary) MarshalJSON() ([]byte, error) {
	var cpuUser, cpuSystem, cpuPerSession *float64
	if s.CPUMeasured {
		u, sy, ps := s.CPUUser.Seconds(), s.CPUSystem.Seconds(), s.CPUPerSession
		cpuUser, cpuSystem, cpuPerSession = &u, &sy, &ps
	}
	status := map[string]int64{}
	for code, n := range s.HTTPStatus {
		status[strconv.Itoa(code)] = n
	}
	return json.Marshal(struct {
		Devices            int               `json:"devices"`
		Model              DataModel         `json:"model"`
		Elapsed            float64           `json:"elapsed_s"`
		SessionsStarted    int64             `json:"sessions_started"`
		SessionsOK         int64             `json:"sessions_ok"`
		SessionsFailed     int64             `json:"sessions_failed"`
		SessionsShed       int64             `json:"sessions_shed"`
		SessionsCanceled   int64             `json:"sessions_canceled"`
		SessionsPerSecond  float64           `json:"sessions_per_s"`
		SessionLatency     Latency           `json:"session_latency"`
		ExchangeLatency    Latency           `json:"exchange_latency"`
		HTTPStatus         map[string]int64  `json:"http_status"`
		HTTP503            int64             `json:"http_503"`
		Retries            int64             `json:"retries"`
		RetryAfterWait     float64           `json:"retry_after_wait_s"`
		AuthChallenges     int64             `json:"auth_challenges"`
		Redirects          int64             `json:"redirects"`
		LateStarts         int64             `json:"late_starts"`
		Errors             map[string]int64  `json:"errors"`
		FirstErrors        map[string]string `json:"first_errors"`
		Requests           map[string]int64  `json:"requests"`
		Faults             map[string]int64  `json:"faults"`
		Events             map[string]int64  `json:"events"`
		TransfersCompleted int64             `json:"transfers_completed"`
		ConnReqReceived    int64             `json:"conn_req_received"`
		ConnReqAccepted    int64             `json:"conn_req_accepted"`
		ConnReqRejected    int64             `json:"conn_req_rejected"`
		DownloadsResumed   int64             `json:"downloads_resumed"`
		CPUUser            *float64          `json:"cpu_user_s,omitempty"`
		CPUSystem          *float64          `json:"cpu_system_s,omitempty"`
		CPUPerSession      *float64          `json:"cpu_us_per_session,omitempty"`
	}{
		s.Devices, s.Model, s.Elapsed.Seconds(), s.SessionsStarted, s.SessionsOK, s.SessionsFailed,
		s.SessionsShed, s.SessionsCanceled, s.SessionsPerSecond, s.SessionLatency, s.ExchangeLatency, status, s.HTTP503,
		s.Retries, s.RetryAfterWait.Seconds(), s.AuthChallenges, s.Redirects, s.LateStarts, s.Errors, s.FirstErrors,
		s.Requests, s.Faults, s.Events, s.TransfersCompleted, s.ConnReqReceived, s.ConnReqAccepted,
		s.ConnReqRejected, s.DownloadsResumed, cpuUser, cpuSystem, cpuPerSession,
	})
}

// WriteText prints the summary for people.
func (s *Summary) WriteText(w io.Writer) {
	fmt.Fprintf(w, "devices %d (%s), elapsed %.2fs\n", s.Devices, s.Model, s.Elapsed.Seconds())
	fmt.Fprintf(w, "sessions: started %d, ok %d, failed %d, shed (503) %d, canceled %d; %.1f sessions/s\n",
		s.SessionsStarted, s.SessionsOK, s.SessionsFailed, s.SessionsShed, s.SessionsCanceled, s.SessionsPerSecond)
	lat := func(name string, l Latency) {
		fmt.Fprintf(w, "%s latency (n=%d): p50 %v, p90 %v, p99 %v, max %v, mean %v\n",
			name, l.Count, l.P50, l.P90, l.P99, l.Max, l.Mean)
	}
	lat("session", s.SessionLatency)
	lat("exchange", s.ExchangeLatency)
	codes := make([]int, 0, len(s.HTTPStatus))
	for c := range s.HTTPStatus {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	var parts []string
	for _, c := range codes {
		parts = append(parts, fmt.Sprintf("%d:%d", c, s.HTTPStatus[c]))
	}
	fmt.Fprintf(w, "http status: %s (503s: %d)\n", strings.Join(parts, " "), s.HTTP503)
	fmt.Fprintf(w, "retries %d (Retry-After asked %.1fs), auth challenges %d, redirects %d, late starts %d\n",
		s.Retries, s.RetryAfterWait.Seconds(), s.AuthChallenges, s.Redirects, s.LateStarts)
	writeCounts(w, "errors", s.Errors)
	kinds := make([]string, 0, len(s.FirstErrors))
	for k := range s.FirstErrors {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(w, "  first %s error: %s\n", k, s.FirstErrors[k])
	}
	writeCounts(w, "requests answered", s.Requests)
	writeCounts(w, "faults returned", s.Faults)
	writeCounts(w, "events sent", s.Events)
	fmt.Fprintf(w, "transfers completed %d (downloads resumed %d); connection requests received %d, accepted %d, rejected %d\n",
		s.TransfersCompleted, s.DownloadsResumed, s.ConnReqReceived, s.ConnReqAccepted, s.ConnReqRejected)
	if s.CPUMeasured {
		fmt.Fprintf(w, "cpu: %.0f µs/session (user %.2fs, system %.2fs over %d sessions started)\n",
			s.CPUPerSession, s.CPUUser.Seconds(), s.CPUSystem.Seconds(), s.SessionsStarted)
	}
}

func writeCounts(w io.Writer, name string, m map[string]int64) {
	if len(m) == 0 {
		fmt.Fprintf(w, "%s: none\n", name)
		return
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s:%d", k, m[k])
	}
	fmt.Fprintf(w, "%s: %s\n", name, strings.Join(parts, " "))
}
