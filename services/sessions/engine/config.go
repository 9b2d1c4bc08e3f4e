package engine

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Config is the session worker's configuration (docs/style.md rule 2).
// Flags are "sessions.<kebab-name>"; DefaultConfig holds the defaults.
type Config struct {
	// AdvertiseAddr is the host:port gateways dial to reach this worker,
	// registered for routing. The worker serves on its process's shared
	// gRPC server (fleetacs -server.grpc-addr); when this is empty, the
	// process fills in that server's bound address.
	AdvertiseAddr string
	// AdvertiseHost, used when AdvertiseAddr is empty, is the host (an IP
	// address without brackets, or a name) gateways dial, joined by the
	// process with its internal gRPC server's port: a pod gets its IP from
	// the environment (POD_IP), and an IPv6 one needs brackets in a
	// host:port that a text template cannot add (docs/deploy.md).
	AdvertiseHost string
	// WorkerID names this worker in the registry, unique in the cluster
	// and stable for the life of the process (the pod name). Empty means
	// the host name.
	WorkerID string
	// MaxSessions is how many sessions the worker holds at once; a new or
	// resumed session over it is refused with RESOURCE_EXHAUSTED. It is
	// also the weight the worker registers with.
	MaxSessions int
	// DiscoveryBatchSize is how many parameter names one
	// GetParameterValues of a tree discovery asks for (docs/protocol.md
	// §13, output 7: modest batches), unless a quirks profile or what the
	// product class showed says less.
	DiscoveryBatchSize int
	// LeaseTTL is what each renewal of a session's device lease extends
	// it by; renewals happen every third of it.
	LeaseTTL time.Duration
	// CheckpointTTL is how long a checkpoint outlives the exchange that
	// saved it: it must exceed the longest pause between two requests of
	// a session.
	CheckpointTTL time.Duration
	// RegistryTTL is the life of the worker's registration; heartbeats
	// refresh it every third of it.
	RegistryTTL time.Duration
	// IdleGrace is added to the CPE's session timeout (its SessionTimeout
	// header, else 30 s) before an idle session is expired, so that the
	// gateway, not the worker, is the first to give up on a slow CPE.
	IdleGrace time.Duration
	// MaxBodyBytes bounds the CWMP body the worker decodes.
	MaxBodyBytes int
	// DrainTimeout is how long open sessions may run on after shutdown
	// begins; the ones left are handed off to other workers through their
	// checkpoints.
	DrainTimeout time.Duration
	// CallTimeout bounds each call to inventory and to the affinity store
	// made outside a gateway's request (renewals, expiry, shutdown).
	CallTimeout time.Duration
	// MaxOperations is how many operations (a discovery, tasks...) one
	// session runs; the rest wait for the next session.
	MaxOperations int
	// MaxInformParameters bounds the parameters of an Inform a session
	// keeps and records; the rest are dropped, logged and counted.
	MaxInformParameters int
	// MaxSessionParameters and MaxSessionBytes bound what one session
	// holds to record (the Inform's parameters and what its operations
	// learn, estimated by ParameterCost); a discovery stops there.
	MaxSessionParameters int
	MaxSessionBytes      int
	// MemoryBudget bounds the bytes all the worker's sessions hold: a new
	// session whose Inform does not fit is shed with 503 and Retry-After.
	// 0 means no budget.
	MemoryBudget int
	// MaxDiscoveries bounds the sessions of this worker that run a tree
	// discovery at once; 0 means no bound. A session that would start one
	// over it has its discovery postponed (docs/sessions.md, "Discovery
	// under load"): it records its Inform, asks the CPE to come back after
	// DiscoveryRetry and ends; the discovery runs at a later session.
	MaxDiscoveries int
	// LargeExchangeBytes and LargeExchangeSlots: exchanges whose CPE
	// message has at least LargeExchangeBytes (the responses of a
	// discovery, large Informs) run, up to their checkpoint save, at most
	// LargeExchangeSlots at a time; smaller ones never wait for them
	// (gate.go, "Large exchanges"). 0 slots means half of GOMAXPROCS, at
	// least one; 0 bytes turns the gate off.
	LargeExchangeBytes int
	LargeExchangeSlots int
	// DiscoveryRetry is the delay a postponed discovery asks of the CPE
	// (ScheduleInform), spread over 50% to 150% of it per device; 0 sends
	// no ScheduleInform and leaves the discovery to the device's next
	// session, whenever it comes.
	DiscoveryRetry time.Duration
	// QuirksFile names a JSON file of quirks profiles per OUI and product
	// class (docs/sessions.md), read when the worker starts; empty uses
	// the built-in profiles only.
	QuirksFile string
	// MaxTasksPerSession bounds the tasks one session runs (ClaimTasks'
	// max_run); the rest stay queued for a later session.
	MaxTasksPerSession int
	// TaskIndexResync is how often the worker lists the task queues that
	// hold messages to rebuild its index of them (services/sessions
	// taskindex.go); 0 turns the index off: every session reads its
	// device's queue.
	TaskIndexResync time.Duration
	// TaskAwaitTimeout is how long a task the CPE accepted waits for what
	// ends it (the "M Reboot" Inform, its TransferComplete) when the task
	// does not say (TaskOptions.await_timeout_seconds 0).
	TaskAwaitTimeout time.Duration
	// EventsMaxInFlight bounds the device events being published whose
	// acknowledgement has not come back; over it, events are dropped and
	// counted rather than the session waiting.
	EventsMaxInFlight int
	// CRCredentials is whether sessions generate connection-request
	// credentials for devices the inventory holds none of (CRGenerate) or
	// not (CROff); credentials an operator gave (per device, or per
	// product class in CRCredentialsFile) are set either way (crcreds.go).
	CRCredentials string
	// CRCredentialsRetry is how long sessions leave a CPE that refused
	// connection-request credentials before they try again.
	CRCredentialsRetry time.Duration
	// PresetsRefresh is how long a worker uses a tenant's cached preset
	// set before it asks whether the set changed (docs/provisioning.md,
	// "Caching"); 0 asks at every session.
	PresetsRefresh time.Duration
	// CRCredentialsFile names a JSON file of fixed connection-request
	// credentials per OUI and product class (docs/sessions.md), used in
	// place of generated ones; read when the worker starts.
	CRCredentialsFile string
	// SecretsKeyFile is the key file (package secretbox) that seals the
	// secrets sessions keep in checkpoints; every worker sharing the
	// affinity store needs the same keys. Empty: the process's inventory
	// keys when the inventory runs in it, else a key of this worker alone.
	SecretsKeyFile string
}

// DefaultConfig returns the defaults RegisterFlags registers.
func DefaultConfig() Config {
	var c Config
	c.RegisterFlags(flag.NewFlagSet("defaults", flag.ContinueOnError))
	return c
}

// RegisterFlags registers the service's flags, named "sessions.<name>", with
// their defaults.
func (c *Config) RegisterFlags(fs *flag.FlagSet) {
	fs.StringVar(&c.AdvertiseAddr, "sessions.advertise-addr", "", "host:port gateways dial to reach this worker (empty: the address the process's internal gRPC server is bound to, -server.internal-grpc-addr)")
	fs.StringVar(&c.AdvertiseHost, "sessions.advertise-host", "", "host gateways dial to reach this worker, with the port of -server.internal-grpc-addr (an IPv6 address without brackets; used when -sessions.advertise-addr is empty)")
	fs.StringVar(&c.WorkerID, "sessions.worker-id", "", "name of this worker in the registry, unique in the cluster (empty: the host name)")
	fs.IntVar(&c.MaxSessions, "sessions.max-sessions", 10000, "sessions this worker holds at once; more are refused with RESOURCE_EXHAUSTED")
	fs.IntVar(&c.DiscoveryBatchSize, "sessions.discovery-batch-size", 100, "parameter names per GetParameterValues during a tree discovery")
	fs.DurationVar(&c.LeaseTTL, "sessions.lease-ttl", 120*time.Second, "each renewal extends a session's device lease by this much (renewed every third of it)")
	fs.DurationVar(&c.CheckpointTTL, "sessions.checkpoint-ttl", 10*time.Minute, "life of a session checkpoint after the exchange that saved it")
	fs.DurationVar(&c.RegistryTTL, "sessions.registry-ttl", 15*time.Second, "life of the worker's registration (heartbeat every third of it)")
	fs.DurationVar(&c.IdleGrace, "sessions.idle-grace", 30*time.Second, "idle time beyond the CPE's session timeout before the worker expires a session")
	fs.IntVar(&c.MaxBodyBytes, "sessions.max-body-bytes", 4<<20, "largest CWMP body the worker decodes")
	fs.DurationVar(&c.DrainTimeout, "sessions.drain-timeout", 20*time.Second, "on shutdown, time open sessions get to finish before they are handed off (sooner once all left have been silent for 5s)")
	fs.DurationVar(&c.CallTimeout, "sessions.call-timeout", 5*time.Second, "bound of inventory and affinity-store calls made in the background")
	fs.IntVar(&c.MaxOperations, "sessions.max-operations", 32, "operations (discovery, tasks) one session runs; the rest wait for the next session")
	fs.IntVar(&c.MaxInformParameters, "sessions.max-inform-parameters", 1000, "parameters of one Inform a session keeps and records; more are dropped, logged and counted")
	fs.IntVar(&c.MaxSessionParameters, "sessions.max-session-parameters", 50000, "parameters one session keeps to record (Inform and discovery together); a discovery stops there")
	fs.IntVar(&c.MaxSessionBytes, "sessions.max-session-bytes", 16<<20, "estimated bytes one session keeps to record; a discovery stops there")
	fs.IntVar(&c.MemoryBudget, "sessions.memory-budget", 512<<20, "estimated bytes all sessions of the worker keep; a new session that does not fit is shed with 503 (0: no budget)")
	fs.IntVar(&c.MaxDiscoveries, "sessions.max-discoveries", 64, "sessions running a tree discovery at once in this worker; over it, a device's discovery is postponed to a later session (0: no bound)")
	fs.IntVar(&c.LargeExchangeBytes, "sessions.large-exchange-bytes", 16<<10, "exchanges carrying a CPE message of at least this many bytes (a discovery's responses, a large Inform), and the recording of a whole discovered tree, run at most -sessions.large-exchange-slots at a time, so that small ones (periodic sessions) keep cores of their own (0: no gate)")
	fs.IntVar(&c.LargeExchangeSlots, "sessions.large-exchange-slots", 0, "large exchanges this worker runs at once (0: half of GOMAXPROCS, at least one)")
	fs.DurationVar(&c.DiscoveryRetry, "sessions.discovery-retry", time.Minute, "a device whose discovery is postponed is asked (ScheduleInform) to come back after about this long, spread over 50-150% (0: not asked; its next session discovers)")
	fs.IntVar(&c.MaxTasksPerSession, "sessions.max-tasks-per-session", 16, "tasks one session runs; the rest of the device's queue waits for its next session")
	fs.DurationVar(&c.TaskIndexResync, "sessions.task-index-resync", 5*time.Minute, "how often the worker rebuilds, from the task stream, its index of the devices with tasks queued, which spares the sessions of the others a read of NATS (it also rebuilds after every NATS reconnection; 0: no index, every session reads its device's queue)")
	fs.DurationVar(&c.TaskAwaitTimeout, "sessions.task-await-timeout", time.Hour, "how long a task the CPE accepted (Reboot, Download, ...) waits for what ends it, when the task does not say")
	fs.IntVar(&c.EventsMaxInFlight, "sessions.events-max-in-flight", 1024, "device events published and not yet acknowledged; over it, events are dropped and counted, sessions never wait")
	fs.StringVar(&c.QuirksFile, "sessions.quirks-file", "", "JSON file of discovery quirks per OUI and product class, on top of the built-in ones (format in docs/sessions.md)")
	fs.StringVar(&c.CRCredentials, "sessions.cr-credentials", CRGenerate, "connection-request credentials of devices the inventory holds none of: generate (set random ones on the CPE at its first session) or off; operator-given ones are set either way")
	fs.DurationVar(&c.CRCredentialsRetry, "sessions.cr-credentials-retry", 24*time.Hour, "after a CPE refused connection-request credentials, sessions wait this long before they try again")
	fs.DurationVar(&c.PresetsRefresh, "sessions.presets-refresh", 5*time.Second, "how long a worker uses a tenant's cached preset set before it asks whether the set changed (0: at every session)")
	fs.StringVar(&c.SecretsKeyFile, "sessions.secrets-key-file", "", "file of the keys that seal the secrets sessions keep in checkpoints (connection-request passwords being set), the same for every worker (empty: the inventory's keys when it runs in this process, else a key of this worker alone, so that another worker cannot resume such a session)")
	fs.StringVar(&c.CRCredentialsFile, "sessions.cr-credentials-file", "", "JSON file of fixed connection-request credentials per OUI and product class, used in place of generated ones (format in docs/sessions.md; keep it 0600)")
}

// JoinAdvertiseHost sets AdvertiseAddr, when it is empty and
// AdvertiseHost is not, to AdvertiseHost joined with the port of listen
// (the internal gRPC server's listen address), bracketing an IPv6
// address. It fails when both are set, or when the host is not a bare IP
// address or name.
func (c *Config) JoinAdvertiseHost(listen string) error {
	if c.AdvertiseHost == "" {
		return nil
	}
	if c.AdvertiseAddr != "" {
		return errors.New("set -sessions.advertise-addr or -sessions.advertise-host, not both")
	}
	host := c.AdvertiseHost
	if strings.ContainsAny(host, "[]/ ") {
		return fmt.Errorf("sessions.advertise-host %q: want an IP address without brackets, or a host name", host)
	}
	if strings.Contains(host, ":") {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is6() {
			return fmt.Errorf("sessions.advertise-host %q: a host with ':' must be an IPv6 address (without a port)", host)
		}
	}
	_, port, err := net.SplitHostPort(listen)
	if err != nil || port == "" || port == "0" {
		return fmt.Errorf("sessions.advertise-host needs a fixed port in -server.internal-grpc-addr, got %q", listen)
	}
	c.AdvertiseAddr = net.JoinHostPort(host, port)
	return nil
}

// Validate reports every setting that cannot work.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.AdvertiseAddr == "" {
		bad("sessions.advertise-addr must not be empty")
	}
	if c.MaxSessions <= 0 {
		bad("sessions.max-sessions must be positive, got %d", c.MaxSessions)
	}
	if c.DiscoveryBatchSize <= 0 {
		bad("sessions.discovery-batch-size must be positive, got %d", c.DiscoveryBatchSize)
	}
	if c.MaxBodyBytes <= 0 {
		bad("sessions.max-body-bytes must be positive, got %d", c.MaxBodyBytes)
	}
	for _, n := range []struct {
		name string
		v    int
	}{
		{"max-operations", c.MaxOperations}, {"max-inform-parameters", c.MaxInformParameters},
		{"max-session-parameters", c.MaxSessionParameters}, {"max-session-bytes", c.MaxSessionBytes},
		{"max-tasks-per-session", c.MaxTasksPerSession}, {"events-max-in-flight", c.EventsMaxInFlight},
	} {
		if n.v <= 0 {
			bad("sessions.%s must be positive, got %d", n.name, n.v)
		}
	}
	if c.LargeExchangeBytes < 0 || c.LargeExchangeSlots < 0 {
		bad("sessions.large-exchange-bytes and sessions.large-exchange-slots must not be negative, got %d and %d", c.LargeExchangeBytes, c.LargeExchangeSlots)
	}
	if c.MaxDiscoveries < 0 {
		bad("sessions.max-discoveries must not be negative, got %d", c.MaxDiscoveries)
	}
	if c.TaskIndexResync < 0 || (c.TaskIndexResync > 0 && c.TaskIndexResync < time.Second) {
		bad("sessions.task-index-resync must be 0 or at least 1s, got %s", c.TaskIndexResync)
	}
	if c.DiscoveryRetry < 0 || c.DiscoveryRetry > 24*time.Hour {
		bad("sessions.discovery-retry must be between 0 and 24h, got %s", c.DiscoveryRetry)
	}
	if c.CRCredentials != CRGenerate && c.CRCredentials != CROff {
		bad("sessions.cr-credentials must be %q or %q, got %q", CRGenerate, CROff, c.CRCredentials)
	}
	if c.PresetsRefresh < 0 || c.PresetsRefresh > time.Hour {
		bad("sessions.presets-refresh must be between 0 and 1h, got %s", c.PresetsRefresh)
	}
	if c.CRCredentialsRetry <= 0 {
		bad("sessions.cr-credentials-retry must be positive, got %s", c.CRCredentialsRetry)
	}
	if c.MemoryBudget < 0 {
		bad("sessions.memory-budget must not be negative, got %d", c.MemoryBudget)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"lease-ttl", c.LeaseTTL}, {"checkpoint-ttl", c.CheckpointTTL},
		{"registry-ttl", c.RegistryTTL}, {"call-timeout", c.CallTimeout}, {"task-await-timeout", c.TaskAwaitTimeout},
	} {
		if d.v <= 0 {
			bad("sessions.%s must be positive, got %s", d.name, d.v)
		}
	}
	if c.IdleGrace < 0 {
		bad("sessions.idle-grace must not be negative, got %s", c.IdleGrace)
	}
	if c.DrainTimeout < 0 {
		bad("sessions.drain-timeout must not be negative, got %s", c.DrainTimeout)
	}
	return errors.Join(errs...)
}
