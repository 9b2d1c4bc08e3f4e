package sim

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/fleetacs/fleetacs/pkg/cwmp"
)

// ConnReqMode says whether and how devices listen for connection requests
// (docs/protocol.md §8.1).
type ConnReqMode string

const (
	// ConnReqOff: no listener; ConnectionRequestURL is empty.
	ConnReqOff ConnReqMode = ""
	// ConnReqPerDevice: each device listens on its own random port, like a
	// real CPE (one socket per device).
	ConnReqPerDevice ConnReqMode = "per-device"
	// ConnReqShared: one listener serves every device, each at its own
	// random path; cheaper for large fleets.
	ConnReqShared ConnReqMode = "shared"
)

// Config configures a Simulator. Zero fields take the defaults below
// (applied by New); RegisterFlags exposes every field as a flag.
type Config struct {
	// URL is the ACS URL (ManagementServer.URL), http or https.
	URL string
	// Model is the root data model: TR181 (default) or TR098.
	Model DataModel
	// Tables adds objects to the model subset or changes the initial
	// instance count of its tables (model path -> count), e.g.
	// "Device.Hosts.Host.{i}." -> 20.
	Tables map[string]int

	// Devices is the number of simulated CPEs.
	Devices int
	// Seed makes identities and timing jitter reproducible.
	Seed uint64
	// SerialPrefix starts every SerialNumber.
	SerialPrefix string
	// OUI, ProductClass and Manufacturer, when set, are used by every
	// device; otherwise each device gets one of a few seed-derived vendors.
	OUI, ProductClass, Manufacturer string
	// SoftwareVersion is the initial DeviceInfo.SoftwareVersion.
	SoftwareVersion string
	// Username and Password are the ACS credentials, templates in which
	// {sn}, {oui}, {pc} and {i} (the device index) are replaced, so they
	// are per-device ("cpe-{sn}") or shared ("fleet"). Empty Username: the
	// device cannot answer a 401.
	Username, Password string
	// ConnReqUsername and ConnReqPassword are the connection request
	// credentials, templates as above.
	ConnReqUsername, ConnReqPassword string
	// Known devices have bootstrapped before: their first session carries
	// 1 BOOT (boot storm) or 2 PERIODIC, not 0 BOOTSTRAP.
	Known bool

	// CWMPVersion is the newest CWMP version the devices speak, "1.0" to
	// "1.4"; 1.4 devices send SupportedCWMPVersions.
	CWMPVersion string
	// ConnMode is how sessions use connections and cookies.
	ConnMode ConnMode
	// Gzip compresses request bodies (Content-Encoding: gzip).
	Gzip bool
	// SourceIPPerDevice makes each device dial from its own loopback
	// address (127.x.y.z), so an ACS on loopback can tell devices apart by
	// client address, as it must for cookie-less CPEs.
	SourceIPPerDevice bool
	// InsecureSkipVerify accepts any TLS certificate from the ACS.
	InsecureSkipVerify bool
	// Timeout bounds each HTTP exchange (and dialing).
	Timeout time.Duration
	// SessionTimeout is the SessionTimeout header of 1.3+ Informs, in
	// seconds (0: not sent).
	SessionTimeout uint32

	// Load. Without BootStorm or Periodic the devices run sessions back to
	// back: a closed loop of Concurrency workers, or an open loop at Rate
	// sessions per second.
	//
	// BootStorm: every device boots at once (bounded by Concurrency) and
	// then waits for what the ACS asked (and for connection requests);
	// with Periodic it then informs periodically.
	BootStorm bool
	// Periodic: each device informs every Interval (± Jitter), starting
	// at a random phase unless BootStorm.
	Periodic bool
	Interval time.Duration
	// Jitter is the fraction of Interval by which each period varies.
	Jitter float64
	// Sessions stops the run after this many sessions (0: no limit).
	Sessions int
	// Duration stops the run after this long (0: no limit).
	Duration time.Duration
	// Rate paces session starts (sessions/s) in an open loop; 0: none.
	Rate float64
	// Concurrency is the number of sessions in flight: the workers of the
	// closed loop, the cap of the open loop.
	Concurrency int

	// ConnReq selects the connection request listener.
	ConnReq ConnReqMode
	// ConnReqAddr is the IP the listeners bind, ConnReqHost the host put in
	// ConnectionRequestURL (default ConnReqAddr).
	ConnReqAddr, ConnReqHost string
	// ConnReqUDP makes each device listen for UDP connection requests
	// (TR-111 Annex G, docs/protocol.md §8.2) on its own port of
	// ConnReqAddr and report it as UDPConnectionRequestAddress.
	ConnReqUDP bool
	// STUNServer, with ConnReqUDP, is the STUN server (host:port) each
	// device sends Binding Requests to from its UDP port, every
	// STUNInterval, with its STUN user name; the address the server maps
	// becomes UDPConnectionRequestAddress.
	STUNServer   string
	STUNInterval time.Duration

	// TimeScale multiplies every delay the protocol dictates: Retry-After,
	// retry waits, DelaySeconds, ScheduleInform, time windows. Tests and
	// compressed load runs set it below 1.
	TimeScale float64
	// MaxRetryAfter caps the wait after a 503 (0: no cap).
	MaxRetryAfter time.Duration
	// RetryMinWait and RetryMultiplier are the session retry policy
	// (docs/protocol.md §4.4: CWMPRetryMinimumWaitInterval, CWMPRetryIntervalMultiplier/1000).
	RetryMinWait    time.Duration
	RetryMultiplier float64
	// RebootTime is how long a reboot takes before the BOOT session.
	RebootTime time.Duration
	// TransferTime is how long a transfer or DU change takes.
	TransferTime time.Duration
	// Diagnostics adds the diagnostic objects of TR-143 (IPPing,
	// TraceRoute, Download/UploadDiagnostics, NSLookup, ServerSelection)
	// to the devices' trees; requesting one runs a simulated test.
	Diagnostics bool
	// DiagnosticTime is how long a diagnostic test takes after the session
	// that requested it (its results are simulated, see diagnostics.go).
	DiagnosticTime time.Duration
	// StallDiagnostics makes the devices accept diagnostics and never
	// complete them (no 8 DIAGNOSTICS COMPLETE): an ACS's timeout test.
	StallDiagnostics bool
	// FetchTransfers makes transfers real: a Download GETs its URL, an
	// Upload PUTs a small file, with the given credentials.
	FetchTransfers bool
	// FetchInterruptAfter, with FetchTransfers, cuts each download's first
	// attempt after this many bytes, as a dropped connection would; the
	// device resumes it with a Range request. 0: never.
	FetchInterruptAfter int64
	// FailTransfers is the share of devices (0 to 1) whose downloads all
	// fail with 9010 (Download failure) without fetching anything: device
	// i fails when floor((i+1)*f) > floor(i*f), so exactly floor(n*f) of
	// n devices fail, spread evenly over the indexes. 0: none.
	FailTransfers float64
	// CrashGPVAbove makes the devices' CWMP client crash, as netcwmp's
	// does past 31 names, on a GetParameterValues of more names than
	// this: it never answers (in keep-alive mode it closes its
	// connection) and restarts, its next session carrying 1 BOOT after
	// the usual retry wait. 0: never.
	CrashGPVAbove int

	// GiveUp ends the run when the ACS has not answered a single request
	// this long after the start while connecting to it fails (a wrong URL,
	// a closed port): Run then returns ErrUnreachable. Zero means
	// DefaultGiveUp, negative never.
	GiveUp time.Duration

	// OnSession, when set, is called after every session (from the
	// session's goroutine).
	OnSession func(SessionReport)
	// OnRequest, when set, is called with every ACS request a device
	// received, before the device handles and answers it (from the
	// session's goroutine): a test's hook for what happens while a request
	// is in flight. When it returns true the device handles the request
	// but its answer is lost: the connection breaks and the session fails
	// (kind "answer_lost"), to be retried like any failed session.
	OnRequest func(*Device, cwmp.Message) (loseAnswer bool)
}

// Defaults, in one place.
const (
	DefaultURL             = "http://127.0.0.1:7547/"
	DefaultDevices         = 100
	DefaultSeed            = 1
	DefaultSerialPrefix    = "SIM"
	DefaultSoftwareVersion = "1.0.0"
	DefaultCWMPVersion     = "1.4"
	DefaultTimeout         = 30 * time.Second
	DefaultGiveUp          = 10 * time.Second
	DefaultInterval        = 300 * time.Second
	DefaultJitter          = 0.1
	DefaultConcurrency     = 64
	DefaultConnReqAddr     = "127.0.0.1"
	DefaultRetryMinWait    = 5 * time.Second
	DefaultRetryMultiplier = 2.0
	DefaultConnReqUsername = "cr-{sn}"
	DefaultConnReqPassword = "crpass-{sn}"
	DefaultSTUNInterval    = 60 * time.Second
)

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.URL == "" {
		c.URL = DefaultURL
	}
	if c.Model == "" {
		c.Model = TR181
	}
	if c.Devices == 0 {
		c.Devices = DefaultDevices
	}
	if c.Seed == 0 {
		c.Seed = DefaultSeed
	}
	if c.SerialPrefix == "" {
		c.SerialPrefix = DefaultSerialPrefix
	}
	if c.SoftwareVersion == "" {
		c.SoftwareVersion = DefaultSoftwareVersion
	}
	if c.CWMPVersion == "" {
		c.CWMPVersion = DefaultCWMPVersion
	}
	if c.ConnMode == "" {
		c.ConnMode = ConnCookie
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.GiveUp == 0 {
		c.GiveUp = DefaultGiveUp
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.Concurrency == 0 {
		c.Concurrency = DefaultConcurrency
	}
	if c.ConnReqAddr == "" {
		c.ConnReqAddr = DefaultConnReqAddr
	}
	if c.ConnReqHost == "" {
		c.ConnReqHost = c.ConnReqAddr
	}
	if c.STUNInterval == 0 {
		c.STUNInterval = DefaultSTUNInterval
	}
	if c.ConnReqUsername == "" {
		c.ConnReqUsername = DefaultConnReqUsername
	}
	if c.ConnReqPassword == "" {
		c.ConnReqPassword = DefaultConnReqPassword
	}
	if c.TimeScale == 0 {
		c.TimeScale = 1
	}
	if c.RetryMinWait == 0 {
		c.RetryMinWait = DefaultRetryMinWait
	}
	if c.RetryMultiplier == 0 {
		c.RetryMultiplier = DefaultRetryMultiplier
	}
	return c
}

// Validate reports the first setting that cannot work.
func (c *Config) Validate() error {
	if _, err := parseTarget(c.URL); err != nil {
		return fmt.Errorf("config url: %w", err)
	}
	if _, err := c.Model.source(); err != nil {
		return fmt.Errorf("config model: %w", err)
	}
	if c.Devices < 1 {
		return errors.New("config devices: need at least 1")
	}
	if c.FailTransfers < 0 || c.FailTransfers > 1 || c.FailTransfers != c.FailTransfers {
		return errors.New("config fail-transfers: a fraction from 0 to 1")
	}
	if c.FetchInterruptAfter < 0 {
		return errors.New("config fetch-interrupt-after: must not be negative")
	}
	if c.OUI != "" && !validOUI(c.OUI) {
		return fmt.Errorf("config oui %q: want 6 upper-case hex digits", c.OUI)
	}
	if _, err := cwmp.ParseVersion(c.CWMPVersion); err != nil {
		return fmt.Errorf("config cwmp-version: %w", err)
	}
	switch c.ConnMode {
	case ConnCookie, ConnKeepAlive, ConnNewConn:
	default:
		return fmt.Errorf("config conn-mode %q: want cookie, keepalive or newconn", c.ConnMode)
	}
	switch c.ConnReq {
	case ConnReqOff, ConnReqPerDevice, ConnReqShared:
	default:
		return fmt.Errorf("config conn-req %q: want per-device or shared", c.ConnReq)
	}
	if c.STUNServer != "" {
		if !c.ConnReqUDP {
			return errors.New("config stun: needs cr-udp")
		}
		if _, _, err := net.SplitHostPort(c.STUNServer); err != nil {
			return fmt.Errorf("config stun %q: %w", c.STUNServer, err)
		}
	}
	if (c.ConnReq != ConnReqOff || c.ConnReqUDP) && net.ParseIP(c.ConnReqAddr) == nil {
		return fmt.Errorf("config conn-req-addr %q: not an IP address", c.ConnReqAddr)
	}
	if c.SourceIPPerDevice && c.Devices > 1<<22 {
		return errors.New("config source-ip-per-device: at most 4194304 devices fit in 127/8")
	}
	switch {
	case c.Timeout <= 0:
		return errors.New("config timeout: must be positive")
	case c.Interval <= 0:
		return errors.New("config interval: must be positive")
	case c.Jitter < 0 || c.Jitter >= 1:
		return errors.New("config jitter: want a fraction in [0, 1)")
	case c.Sessions < 0:
		return errors.New("config sessions: must not be negative")
	case c.Duration < 0:
		return errors.New("config duration: must not be negative")
	case c.Rate < 0:
		return errors.New("config rate: must not be negative")
	case c.Concurrency < 1:
		return errors.New("config concurrency: need at least 1")
	case c.TimeScale <= 0:
		return errors.New("config time-scale: must be positive")
	case c.RetryMultiplier < 1:
		return errors.New("config retry-multiplier: must be at least 1")
	case c.CrashGPVAbove < 0:
		return errors.New("config crash-gpv-above: must not be negative")
	}
	for path, n := range c.Tables {
		if n < 0 {
			return fmt.Errorf("config table %s: negative count", path)
		}
	}
	return nil
}

func validOUI(s string) bool {
	if len(s) != 6 {
		return false
	}
	for i := 0; i < 6; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// RegisterFlags exposes the configuration as command-line flags, with the
// defaults above.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	*c = c.withDefaults()
	fs.StringVar(&c.URL, "url", c.URL, "ACS URL the devices inform")
	fs.Func("model", "data model: tr181 (Device.) or tr098 (InternetGatewayDevice.) (default tr181)", func(s string) error {
		c.Model = DataModel(s)
		_, err := c.Model.source()
		return err
	})
	fs.Func("table", "add an object or set a table's instance count, PATH=N (repeatable), e.g. Device.Hosts.Host.{i}.=20", func(s string) error {
		path, n, ok := strings.Cut(s, "=")
		count, err := strconv.Atoi(n)
		if !ok || err != nil || count < 0 {
			return errors.New("want PATH=N")
		}
		if c.Tables == nil {
			c.Tables = map[string]int{}
		}
		c.Tables[path] = count
		return nil
	})
	fs.IntVar(&c.Devices, "devices", c.Devices, "number of simulated CPEs")
	fs.Uint64Var(&c.Seed, "seed", c.Seed, "seed of identities and jitter")
	fs.StringVar(&c.SerialPrefix, "prefix", c.SerialPrefix, "SerialNumber prefix")
	fs.StringVar(&c.OUI, "oui", c.OUI, "OUI of every device (default: a few seed-derived vendors)")
	fs.StringVar(&c.ProductClass, "product-class", c.ProductClass, "ProductClass of every device (default: per vendor)")
	fs.StringVar(&c.Manufacturer, "manufacturer", c.Manufacturer, "Manufacturer of every device (default: per vendor)")
	fs.StringVar(&c.SoftwareVersion, "software-version", c.SoftwareVersion, "initial SoftwareVersion")
	fs.StringVar(&c.Username, "username", c.Username, "ACS username template ({sn} {oui} {pc} {i})")
	fs.StringVar(&c.Password, "password", c.Password, "ACS password template ({sn} {oui} {pc} {i})")
	fs.StringVar(&c.ConnReqUsername, "cr-username", c.ConnReqUsername, "connection request username template")
	fs.StringVar(&c.ConnReqPassword, "cr-password", c.ConnReqPassword, "connection request password template")
	fs.BoolVar(&c.Known, "known", c.Known, "devices bootstrapped before: no 0 BOOTSTRAP on first contact")
	fs.StringVar(&c.CWMPVersion, "cwmp-version", c.CWMPVersion, "newest CWMP version spoken, 1.0 to 1.4")
	fs.Func("conn-mode", "cookie (pooled connections, session cookie), keepalive (cookie-less, one connection per session) or newconn (cookie-less, new connection per POST) (default cookie)", func(s string) error {
		c.ConnMode = ConnMode(s)
		return nil
	})
	fs.BoolVar(&c.Gzip, "gzip", c.Gzip, "gzip request bodies")
	fs.BoolVar(&c.SourceIPPerDevice, "source-ip-per-device", c.SourceIPPerDevice, "dial from a distinct 127.x.y.z address per device")
	fs.BoolVar(&c.InsecureSkipVerify, "insecure", c.InsecureSkipVerify, "accept any TLS certificate from the ACS")
	fs.DurationVar(&c.Timeout, "timeout", c.Timeout, "timeout of each HTTP exchange")
	fs.DurationVar(&c.GiveUp, "give-up", c.GiveUp, "end the run when the ACS has answered nothing this long after the start and connecting to it fails (negative: never)")
	fs.Func("session-timeout", "SessionTimeout header in seconds (CWMP 1.3+; 0: none)", func(s string) error {
		v, err := strconv.ParseUint(s, 10, 32)
		c.SessionTimeout = uint32(v)
		return err
	})
	fs.BoolVar(&c.BootStorm, "boot-storm", c.BootStorm, "all devices boot at once, bounded by -concurrency")
	fs.BoolVar(&c.Periodic, "periodic", c.Periodic, "each device informs every -interval with -jitter")
	fs.DurationVar(&c.Interval, "interval", c.Interval, "periodic inform interval")
	fs.Float64Var(&c.Jitter, "jitter", c.Jitter, "fraction of -interval by which each period varies")
	fs.IntVar(&c.Sessions, "sessions", c.Sessions, "stop after this many sessions (0: no limit)")
	fs.DurationVar(&c.Duration, "duration", c.Duration, "stop after this long (0: no limit)")
	fs.Float64Var(&c.Rate, "rate", c.Rate, "target sessions/s, open loop (0: closed loop)")
	fs.IntVar(&c.Concurrency, "concurrency", c.Concurrency, "sessions in flight: closed-loop workers or open-loop cap")
	fs.Func("cr", "connection request listener: per-device or shared (default: none)", func(s string) error {
		c.ConnReq = ConnReqMode(s)
		return nil
	})
	fs.StringVar(&c.ConnReqAddr, "cr-addr", c.ConnReqAddr, "IP the connection request listeners bind")
	fs.StringVar(&c.ConnReqHost, "cr-host", "", "host in ConnectionRequestURL (default -cr-addr)")
	fs.BoolVar(&c.ConnReqUDP, "cr-udp", c.ConnReqUDP, "each device also listens for UDP connection requests (TR-111) on -cr-addr and reports UDPConnectionRequestAddress")
	fs.StringVar(&c.STUNServer, "stun", c.STUNServer, "with -cr-udp: STUN server host:port the devices send binding requests to, so that the ACS learns their bindings")
	fs.DurationVar(&c.STUNInterval, "stun-interval", c.STUNInterval, "with -stun: time between a device's binding requests")
	fs.Float64Var(&c.TimeScale, "time-scale", c.TimeScale, "multiply protocol delays (Retry-After, retry waits, DelaySeconds) by this")
	fs.DurationVar(&c.MaxRetryAfter, "max-retry-after", c.MaxRetryAfter, "cap on the wait after a 503 (0: none)")
	fs.DurationVar(&c.RetryMinWait, "retry-min-wait", c.RetryMinWait, "session retry minimum wait (CWMPRetryMinimumWaitInterval)")
	fs.Float64Var(&c.RetryMultiplier, "retry-multiplier", c.RetryMultiplier, "session retry multiplier (CWMPRetryIntervalMultiplier/1000)")
	fs.DurationVar(&c.RebootTime, "reboot-time", c.RebootTime, "how long a reboot takes")
	fs.DurationVar(&c.TransferTime, "transfer-time", c.TransferTime, "how long a transfer or DU change takes")
	fs.BoolVar(&c.Diagnostics, "diagnostics", c.Diagnostics, "add the TR-143 diagnostic objects (IPPing, TraceRoute, Download/Upload, NSLookup, ServerSelection) to the devices; requested tests are simulated")
	fs.DurationVar(&c.DiagnosticTime, "diagnostic-time", c.DiagnosticTime, "how long a diagnostic test (IPPing, TraceRoute, ...) takes; results are simulated, nothing is sent")
	fs.BoolVar(&c.StallDiagnostics, "stall-diagnostics", c.StallDiagnostics, "accept diagnostics but never complete them (to test an ACS's timeout)")
	fs.BoolVar(&c.FetchTransfers, "fetch", c.FetchTransfers, "really GET downloads and PUT uploads")
	fs.Float64Var(&c.FailTransfers, "fail-transfers", c.FailTransfers, "share of devices (0 to 1, by device index) whose downloads fail with 9010 without fetching")
	fs.Int64Var(&c.FetchInterruptAfter, "fetch-interrupt-after", c.FetchInterruptAfter, "with -fetch: cut each download's first attempt after this many bytes and resume it with a Range request (0: never)")
	fs.IntVar(&c.CrashGPVAbove, "crash-gpv-above", c.CrashGPVAbove, "a GetParameterValues of more names crashes the client, like netcwmp past 31: connection dropped, restart with 1 BOOT (0: never)")
}
