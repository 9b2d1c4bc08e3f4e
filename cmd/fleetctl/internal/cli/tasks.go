package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/types/known/timestamppb"

	eventsv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/events/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

// taskJSONDoc documents fleetctl's JSON of a task (-o json), a shape of its
// own: stable for scripts whatever the API's protojson does with enums.
const taskJSONDoc = "JSON of a task (-o json), one object per task:\n" +
	"  id, tenant, deviceId, kind (the Operation field: \"set_parameter_values\", \"reboot\", ...),\n" +
	"  state (queued, dispatched, done, fault, expired, cancelled), attempts, commandKey,\n" +
	"  created, updated (RFC 3339), result (null, or the API's TaskResult JSON, e.g.\n" +
	"  {\"getParameterValues\":{\"values\":[...]}}), fault (null, or {code, string, source\n" +
	"  (cpe, transfer, timeout, acs, diagnostic), parameterFaults}), wake (absent, or {status, detail}\n" +
	"  with status as \"sent\", \"no_credentials\", ...)."

func tasksCommand() *Command {
	var kinds strings.Builder
	tw := tabwriter.NewWriter(&kinds, 0, 8, 2, ' ', 0)
	for _, k := range taskKinds() {
		fmt.Fprintf(tw, "  %s %s\t%s\n", k.name, k.args, k.short)
	}
	tw.Flush()
	return &Command{
		Name:  "tasks",
		Short: "create, read, cancel and watch tasks",
		Long: "Run operations on devices through the tasks API (fleetacs.tasks.v1.TasksService):\n" +
			"a task runs in the device's next session, or at once with -connection-request.\n" +
			"Viewers read tasks, operators create and cancel them. Every tasks command takes\n" +
			"the connection flags -addr, -token, -tls, -ca-file, -cert-file, -key-file and\n" +
			"-timeout, and -tenant (default \"default\"; \"\": the only tenant the credentials cover).\n\n" + taskJSONDoc,
		Commands: []*Command{
			{
				Name: "create", Args: "DEVICE_ID KIND [ARG...]", Short: "Create a task",
				Long: "Create a task of KIND on DEVICE_ID and print it. Kinds:\n" + strings.TrimRight(kinds.String(), "\n") + "\n" +
					"A set value is NAME=VALUE[:TYPE]: TYPE (string, int, unsignedInt, boolean, dateTime,\n" +
					"base64, hexBinary, long, unsignedLong, or xsd:TYPE) is split off at the last ':' only\n" +
					"when it is one of those, so X=http://h:80 is a string; write X=a:int:string for a\n" +
					"value ending in \":int\". Without TYPE the server uses the type inventory knows.\n" +
					"Exit status: 0 when created (with -wait: when it ended done); 1 when -wait ends\n" +
					"with the task in another state or not ended; 2 on a usage error.\n" +
					"Example: fleetctl tasks create DEV set Device.ManagementServer.PeriodicInformInterval=300:unsignedInt -wait 30s",
				Setup: setupTasksCreate,
			},
			{
				Name: "get", Args: "TASK_ID", Short: "Show a task",
				Long:  "Show a task. Exit status 0 when it ended done, 1 otherwise (still queued or\ndispatched, or ended with a fault, expired or cancelled).",
				Setup: setupTasksGet,
			},
			{
				Name: "list", Short: "List tasks, newest first",
				Long: "List the tenant's tasks, newest first. Output (-o): table (default) or json (an array).\n" +
					"The oldest queued tasks, which wait for devices that do not connect: -state queued\n" +
					"-older-than 24h.",
				Setup: setupTasksList,
			},
			{
				Name: "cancel", Args: "TASK_ID...", Short: "Cancel queued tasks",
				Long:  "Cancel queued tasks: they will never reach the CPE. A dispatched or ended task\ncannot be cancelled (TASK_NOT_CANCELLABLE); cancelling a cancelled one succeeds.",
				Setup: setupTasksCancel,
			},
			{
				Name: "watch", Short: "Print every task change as it happens",
				Long: "Print one line per task state change (with -o json one object: {\"revision\": N,\n" +
					"\"task\": TASK}) until interrupted. After a lost connection it resumes from the\n" +
					"revision after the last one printed, so nothing is missed or repeated.\n" +
					"-from REV starts at revision REV (0: changes from now on).",
				Setup: setupTasksWatch,
			},
		},
	}
}

func eventsCommand() *Command {
	return &Command{
		Name:  "events",
		Short: "watch the event stream",
		Long: "Read the tenant's northbound events (fleetacs.events.v1.EventsService): task\n" +
			"state changes, boots, value changes, transfer completions, failed sessions and\n" +
			"connection-request outcomes.",
		Commands: []*Command{{
			Name: "watch", Short: "Print every event as it happens",
			Long: "Print one line per event (with -o json one object: {\"revision\": N, \"event\":\n" +
				"EVENT} in the API's JSON) until interrupted, resuming after a lost connection\n" +
				"from the revision after the last one printed. -kind K (repeatable) keeps kinds\n" +
				"or kind prefixes (\"task\", \"device.boot\"); -device D one device's events.",
			Setup: setupEventsWatch,
		}},
	}
}

// taskFlags are the flags every tasks command takes.
type taskFlags struct {
	conn   connFlags
	tenant string
	output string
}

func (f *taskFlags) register(fs *flag.FlagSet, outputs string) {
	f.conn.register(fs)
	fs.StringVar(&f.tenant, "tenant", "default", "`tenant` of the tasks (\"\": the only tenant the credentials cover)")
	fs.StringVar(&f.output, "o", strings.Split(outputs, ",")[0], "output `format`: "+strings.ReplaceAll(outputs, ",", " or "))
}

func (f *taskFlags) checkOutput(outputs string) error {
	for _, o := range strings.Split(outputs, ",") {
		if f.output == o {
			return nil
		}
	}
	return Usagef("unknown output format %q: want %s", f.output, strings.ReplaceAll(outputs, ",", " or "))
}

type createOptions struct {
	taskFlags
	priority          int
	expires           timeFlag
	idempotencyKey    string
	attempts          uint
	connectionRequest bool
	wait              time.Duration
	retryCPEFaults    bool
	awaitTimeout      time.Duration

	parameterKey, commandKey string
	nextLevel, allTransfers  bool
	fileType, username       string
	passwordFile, password   string
	targetFile, delay        string
	fileSize                 uint64
	xml, namespace           string

	// what names the command in errors; "" is "tasks create".
	what string
}

// kindFlags are the flags that only some kinds take.
var kindFlags = []string{"parameter-key", "command-key", "next-level", "all", "file-type", "username", "password-file",
	"target-file-name", "file-size", "delay", "xml", "namespace"}

func setupTasksCreate(fs *flag.FlagSet) RunFunc {
	o := &createOptions{expires: timeFlag{ahead: true}}
	o.taskFlags.register(fs, "text,json")
	fs.IntVar(&o.priority, "priority", 0, "`priority` -100 to 100: higher runs first in a session")
	fs.Var(&o.expires, "expires", "the task expires unless it reached the CPE by this `time` (RFC 3339 or a\nduration from now; default: the server's, 7 days)")
	fs.StringVar(&o.idempotencyKey, "idempotency-key", "", "`key` unique in the tenant: creating again with it returns the first task")
	fs.UintVar(&o.attempts, "attempts", 0, "how many sessions may carry the task (`n`; default: the server's, 3)")
	fs.BoolVar(&o.connectionRequest, "connection-request", false, "wake the device now with a connection request")
	fs.BoolVar(&o.retryCPEFaults, "retry-cpe-faults", false, "retry the task after a CPE fault too (default: a CPE fault is final)")
	fs.DurationVar(&o.awaitTimeout, "await-timeout", 0, "how long a task the CPE accepted (reboot, download, ...) waits for what ends it\n(whole seconds; default: the worker's, 1h)")
	fs.DurationVar(&o.wait, "wait", 0, "wait up to this `duration` for the task to end")
	fs.StringVar(&o.parameterKey, "parameter-key", "", "ParameterKey of set, add-object and delete-object (default: the task id)")
	fs.StringVar(&o.commandKey, "command-key", "", "CommandKey of reboot, download, upload and schedule-inform (default: the task id)")
	fs.BoolVar(&o.nextLevel, "next-level", false, "get-names: only the level right under PATH")
	fs.BoolVar(&o.allTransfers, "all", false, "queued-transfers: GetAllQueuedTransfers")
	fs.StringVar(&o.fileType, "file-type", "", "download, upload: the FileType, e.g. \"1 Firmware Upgrade Image\"")
	fs.StringVar(&o.username, "username", "", "download, upload: user name for the URL")
	fs.StringVar(&o.passwordFile, "password-file", "", "download, upload: `file` holding the URL's password (stored encrypted)")
	fs.StringVar(&o.targetFile, "target-file-name", "", "download: the name the CPE stores the file as")
	fs.Uint64Var(&o.fileSize, "file-size", 0, "download: file size in bytes")
	fs.StringVar(&o.delay, "delay", "0", "download, upload: delay before the transfer (seconds or 90s, 5m)")
	fs.StringVar(&o.xml, "xml", "", "vendor: the method's arguments as XML")
	fs.StringVar(&o.namespace, "namespace", "", "vendor: namespace URI of the method (default: the session's cwmp)")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		if len(pos) < 2 {
			return Usagef("want DEVICE_ID KIND [ARG...]")
		}
		kind := findKind(pos[1])
		if kind == nil {
			return Usagef("unknown task kind %q (kinds: see -h)", pos[1])
		}
		var stray []string
		fs.Visit(func(f *flag.Flag) {
			for _, k := range kindFlags {
				if f.Name == k && !containsString(kind.flags, k) {
					stray = append(stray, "-"+k)
				}
			}
		})
		if len(stray) > 0 {
			return Usagef("%s does not take %s", kind.name, strings.Join(stray, ", "))
		}
		if o.passwordFile != "" {
			b, err := os.ReadFile(o.passwordFile)
			if err != nil {
				return fmt.Errorf("tasks create: read -password-file: %w", err)
			}
			o.password = strings.TrimRight(string(b), "\r\n")
		}
		opn, err := kind.build(o, pos[2:])
		if err != nil {
			return Usagef("%s: %v", kind.name, err)
		}
		if o.priority < -100 || o.priority > 100 {
			return Usagef("-priority must be -100 to 100, got %d", o.priority)
		}
		if o.wait < 0 || o.wait > 24*time.Hour {
			return Usagef("-wait must be 0 to 24h, got %s", o.wait)
		}
		if o.awaitTimeout < 0 || o.awaitTimeout%time.Second != 0 || o.awaitTimeout > 7*24*time.Hour {
			return Usagef("-await-timeout must be whole seconds from 0 to 168h, got %s", o.awaitTimeout)
		}
		req := &tasksv1.CreateTaskRequest{Tenant: o.tenant, DeviceId: pos[0], Operation: opn, Options: &tasksv1.TaskOptions{
			Priority: int32(o.priority), IdempotencyKey: o.idempotencyKey, MaxAttempts: uint32(o.attempts),
			ConnectionRequest: o.connectionRequest, ExpireTime: o.expires.timestamp(time.Now()),
			RetryCpeFaults: o.retryCPEFaults, AwaitTimeoutSeconds: uint32(o.awaitTimeout / time.Second),
		}}
		return tasksCreate(ctx, env, o, req)
	}
}

func containsString(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

// maxServerWait is the longest wait_ms the API takes; a longer -wait
// polls GetTask afterwards.
const maxServerWait = 300 * time.Second

func tasksCreate(ctx context.Context, env *Env, o *createOptions, req *tasksv1.CreateTaskRequest) error {
	what := "tasks create"
	if o.what != "" {
		what = o.what
	}
	c, err := o.conn.dial(env)
	if err != nil {
		return wrapNonUsage(what, err)
	}
	defer c.cc.Close()
	client := tasksv1.NewTasksServiceClient(c.cc)
	deadline := time.Now().Add(o.wait)
	req.WaitMs = uint32(min(o.wait, maxServerWait) / time.Millisecond)
	cctx, cancel := context.WithTimeout(ctx, c.timeout+min(o.wait, maxServerWait))
	resp, err := client.CreateTask(cctx, req)
	cancel()
	if err != nil {
		return fmt.Errorf("%s: %w", what, c.rpcError(err))
	}
	task := resp.GetTask()
	for o.wait > 0 && !ended(task) && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, ctx.Err())
		case <-time.After(min(time.Second, time.Until(deadline))):
		}
		g, err := call(ctx, c, client.GetTask, &tasksv1.GetTaskRequest{Tenant: req.GetTenant(), Id: task.GetId()})
		if err != nil {
			return fmt.Errorf("%s: wait for %s: %w", what, task.GetId(), err)
		}
		task = g.GetTask()
	}
	if err := writeTask(env.Stdout, o.output, task); err != nil {
		return err
	}
	if o.wait > 0 && task.GetState() != tasksv1.TaskState_TASK_STATE_DONE {
		return fmt.Errorf("%s: task %s is %s after -wait %s", what, task.GetId(), stateName(task.GetState()), o.wait)
	}
	return nil
}

type taskGetOptions struct{ taskFlags }

func setupTasksGet(fs *flag.FlagSet) RunFunc {
	o := &taskGetOptions{}
	o.register(fs, "text,json")
	return func(ctx context.Context, env *Env, args []string) error {
		pos, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		if len(pos) != 1 {
			return Usagef("want one TASK_ID")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("tasks get", err)
		}
		defer c.cc.Close()
		resp, err := call(ctx, c, tasksv1.NewTasksServiceClient(c.cc).GetTask, &tasksv1.GetTaskRequest{Tenant: o.tenant, Id: pos[0]})
		if err != nil {
			return fmt.Errorf("tasks get %s: %w", pos[0], err)
		}
		task := resp.GetTask()
		if err := writeTask(env.Stdout, o.output, task); err != nil {
			return err
		}
		if task.GetState() != tasksv1.TaskState_TASK_STATE_DONE {
			return fmt.Errorf("tasks get %s: task is %s", task.GetId(), stateName(task.GetState()))
		}
		return nil
	}
}

type listTasksOptions struct {
	taskFlags
	device string
	states stringList
	kinds  stringList
	limit  int
	// olderThan and newerThan bound the creation time, back from now
	// (0: no bound).
	olderThan, newerThan time.Duration
}

func setupTasksList(fs *flag.FlagSet) RunFunc {
	o := &listTasksOptions{}
	o.register(fs, "table,json")
	fs.StringVar(&o.device, "device", "", "only this `device`'s tasks")
	fs.Var(&o.states, "state", "only tasks in this `state` (queued, dispatched, done, fault, expired, cancelled; repeatable)")
	fs.Var(&o.kinds, "kind", "only tasks of this `kind`, an Operation field such as reboot or set_parameter_values (repeatable)")
	fs.IntVar(&o.limit, "limit", 100, "at most `n` tasks")
	fs.DurationVar(&o.olderThan, "older-than", 0, "only tasks created more than this `duration` ago (as 24h)")
	fs.DurationVar(&o.newerThan, "newer-than", 0, "only tasks created less than this `duration` ago")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		if err := o.checkOutput("table,json"); err != nil {
			return err
		}
		if o.olderThan < 0 || o.newerThan < 0 {
			return Usagef("-older-than and -newer-than take a positive duration")
		}
		if o.olderThan > 0 && o.newerThan > 0 && o.newerThan <= o.olderThan {
			return Usagef("-newer-than %v with -older-than %v selects nothing", o.newerThan, o.olderThan)
		}
		req := &tasksv1.ListTasksRequest{Tenant: o.tenant, DeviceId: o.device, Kinds: o.kinds, PageSize: int32(min(max(o.limit, 1), 1000))}
		now := time.Now()
		if o.olderThan > 0 {
			req.CreatedBefore = timestamppb.New(now.Add(-o.olderThan))
		}
		if o.newerThan > 0 {
			req.CreatedAfter = timestamppb.New(now.Add(-o.newerThan))
		}
		for _, s := range o.states {
			st, ok := parseState(s)
			if !ok {
				return Usagef("unknown -state %q", s)
			}
			req.States = append(req.States, st)
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("tasks list", err)
		}
		defer c.cc.Close()
		client := tasksv1.NewTasksServiceClient(c.cc)
		var all []*tasksv1.Task
		for len(all) < o.limit {
			resp, err := call(ctx, c, client.ListTasks, req)
			if err != nil {
				return fmt.Errorf("tasks list: %w", err)
			}
			all = append(all, resp.GetTasks()...)
			if resp.GetNextPageToken() == "" || resp.GetNextPageToken() == req.PageToken {
				break
			}
			req.PageToken = resp.GetNextPageToken()
		}
		if len(all) > o.limit {
			all = all[:o.limit]
		}
		if o.output == "json" {
			items := make([]taskJSON, len(all))
			for i, t := range all {
				items[i] = toTaskJSON(t)
			}
			b, err := json.MarshalIndent(items, "", "  ")
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
			return err
		}
		tw := tabwriter.NewWriter(env.Stdout, 0, 8, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tDEVICE\tKIND\tSTATE\tCREATED\tATTEMPTS")
		for _, t := range all {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\n", t.GetId(), quoteIfNeeded(t.GetDeviceId()), kindName(t.GetOperation()), stateName(t.GetState()), formatTime(t.GetCreateTime()), t.GetAttempts())
		}
		return tw.Flush()
	}
}

type taskCancelOptions struct{ taskFlags }

func setupTasksCancel(fs *flag.FlagSet) RunFunc {
	o := &taskCancelOptions{}
	o.register(fs, "text,json")
	return func(ctx context.Context, env *Env, args []string) error {
		ids, err := interspersedArgs(fs, args)
		if err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		if len(ids) == 0 {
			return Usagef("want at least one TASK_ID")
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("tasks cancel", err)
		}
		defer c.cc.Close()
		client := tasksv1.NewTasksServiceClient(c.cc)
		for _, id := range ids {
			resp, err := call(ctx, c, client.CancelTask, &tasksv1.CancelTaskRequest{Tenant: o.tenant, Id: id})
			if err != nil {
				return fmt.Errorf("tasks cancel %s: %w", quoteIfNeeded(id), err)
			}
			if err := writeTask(env.Stdout, o.output, resp.GetTask()); err != nil {
				return err
			}
		}
		return nil
	}
}

type watchOptions struct {
	taskFlags
	device string
	kinds  stringList
	from   uint64
}

func setupTasksWatch(fs *flag.FlagSet) RunFunc {
	o := &watchOptions{}
	o.register(fs, "text,json")
	fs.StringVar(&o.device, "device", "", "only this `device`'s tasks")
	fs.Uint64Var(&o.from, "from", 0, "first `revision` to print (0: changes from now on)")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("tasks watch", err)
		}
		defer c.cc.Close()
		client := tasksv1.NewTasksServiceClient(c.cc)
		w := bufio.NewWriter(env.Stdout)
		return watchLoop(ctx, c, "tasks watch", o.from, func(ctx context.Context, from uint64, seen func(uint64) error) error {
			stream, err := client.WatchTasks(ctx, &tasksv1.WatchTasksRequest{Tenant: o.tenant, StartRevision: from, DeviceId: o.device})
			if err != nil {
				return err
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					return err
				}
				if o.output == "json" {
					b, _ := json.Marshal(struct {
						Revision uint64   `json:"revision"`
						Task     taskJSON `json:"task"`
					}{m.GetRevision(), toTaskJSON(m.GetTask())})
					fmt.Fprintf(w, "%s\n", b)
				} else {
					t := m.GetTask()
					fmt.Fprintf(w, "%d %s %s %s %s %s\n", m.GetRevision(), formatTime(t.GetUpdateTime()), t.GetId(), quoteIfNeeded(t.GetDeviceId()), kindName(t.GetOperation()), stateName(t.GetState()))
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if err := seen(m.GetRevision()); err != nil {
					return err
				}
			}
		})
	}
}

func setupEventsWatch(fs *flag.FlagSet) RunFunc {
	o := &watchOptions{}
	o.register(fs, "text,json")
	fs.StringVar(&o.device, "device", "", "only this `device`'s events")
	fs.Var(&o.kinds, "kind", "only events of this `kind` or kind prefix (repeatable)")
	fs.Uint64Var(&o.from, "from", 0, "first `revision` to print (0: events from now on)")
	return func(ctx context.Context, env *Env, args []string) error {
		if err := interspersed(fs, args, 0); err != nil {
			return err
		}
		if err := o.checkOutput("text,json"); err != nil {
			return err
		}
		c, err := o.conn.dial(env)
		if err != nil {
			return wrapNonUsage("events watch", err)
		}
		defer c.cc.Close()
		client := eventsv1.NewEventsServiceClient(c.cc)
		w := bufio.NewWriter(env.Stdout)
		return watchLoop(ctx, c, "events watch", o.from, func(ctx context.Context, from uint64, seen func(uint64) error) error {
			stream, err := client.WatchEvents(ctx, &eventsv1.WatchEventsRequest{Tenant: o.tenant, StartRevision: from, Kinds: o.kinds, DeviceId: o.device})
			if err != nil {
				return err
			}
			for {
				m, err := stream.Recv()
				if err != nil {
					return err
				}
				ev := m.GetEvent()
				if o.output == "json" {
					b, _ := json.Marshal(struct {
						Revision uint64          `json:"revision"`
						Event    json.RawMessage `json:"event"`
					}{m.GetRevision(), protoJSON(ev)})
					fmt.Fprintf(w, "%s\n", b)
				} else {
					dev := ev.GetDeviceId()
					if dev == "" {
						dev = "-"
					}
					fmt.Fprintf(w, "%d %s %s %s%s\n", m.GetRevision(), formatTime(ev.GetTime()), ev.GetKind(), quoteIfNeeded(dev), eventSummary(ev))
				}
				if err := w.Flush(); err != nil {
					return err
				}
				if err := seen(m.GetRevision()); err != nil {
					return err
				}
			}
		})
	}
}

// watchLoop runs a watch stream, reconnecting after transient errors from
// the revision after the last one seen, with a back-off of up to 10 s.
// It ends without error when ctx ends (an interrupt).
func watchLoop(ctx context.Context, c *conn, what string, from uint64,
	stream func(ctx context.Context, from uint64, seen func(uint64) error) error) error {
	next := from
	delay := 100 * time.Millisecond
	for {
		err := stream(ctx, next, func(rev uint64) error {
			next = rev + 1
			delay = 100 * time.Millisecond
			return nil
		})
		if ctx.Err() != nil {
			return nil
		}
		switch status.Code(err) {
		case codes.Unavailable, codes.Internal, codes.Unknown, codes.DeadlineExceeded, codes.ResourceExhausted, codes.Aborted:
		case codes.OK:
			// The server ended the stream (it is stopping): resume.
		default:
			return fmt.Errorf("%s: %w", what, c.rpcError(err))
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(delay):
		}
		delay = min(2*delay, 10*time.Second)
	}
}

func eventSummary(ev *eventsv1.Event) string {
	switch p := ev.GetPayload().(type) {
	case *eventsv1.Event_Task:
		return " task " + p.Task.GetId() + " " + stateName(p.Task.GetState())
	case *eventsv1.Event_TransferComplete:
		return fmt.Sprintf(" command_key %s fault %d", quoteIfNeeded(p.TransferComplete.GetCommandKey()), p.TransferComplete.GetFaultCode())
	case *eventsv1.Event_SessionFailed:
		return " " + p.SessionFailed.GetReason()
	case *eventsv1.Event_ConnectionRequest:
		return " " + quoteIfNeeded(p.ConnectionRequest.GetDetail())
	case *eventsv1.Event_PresetFirmware:
		f := p.PresetFirmware
		return fmt.Sprintf(" preset %s@%d version %s %s", f.GetPreset(), f.GetRevision(), quoteIfNeeded(f.GetVersion()), quoteIfNeeded(f.GetDetail()))
	case *eventsv1.Event_Campaign:
		c := p.Campaign.GetCampaign()
		s := " campaign " + c.GetId() + " " + campaignStateName(c.GetState())
		if strings.HasPrefix(ev.GetKind(), "campaign.wave_") {
			s += fmt.Sprintf(" wave %d", p.Campaign.GetWave())
		}
		t := c.GetTotals()
		return s + fmt.Sprintf(" succeeded %d failed %d in flight %d", t.GetSucceeded(), t.GetFailed(), t.GetInFlight()+t.GetVerifying())
	}
	return ""
}

// ended reports whether a task is in a final state.
func ended(t *tasksv1.Task) bool {
	switch t.GetState() {
	case tasksv1.TaskState_TASK_STATE_DONE, tasksv1.TaskState_TASK_STATE_FAULT, tasksv1.TaskState_TASK_STATE_EXPIRED, tasksv1.TaskState_TASK_STATE_CANCELLED:
		return true
	}
	return false
}

// stateName is a state in lower case without its prefix ("queued").
func stateName(s tasksv1.TaskState) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "TASK_STATE_"))
}

func parseState(s string) (tasksv1.TaskState, bool) {
	v, ok := tasksv1.TaskState_value["TASK_STATE_"+strings.ToUpper(strings.TrimSpace(s))]
	if !ok || v == 0 {
		return 0, false
	}
	return tasksv1.TaskState(v), true
}

// kindName is the name of the Operation field that is set.
func kindName(op *tasksv1.Operation) string {
	if op == nil {
		return "-"
	}
	fd := op.ProtoReflect().WhichOneof(op.ProtoReflect().Descriptor().Oneofs().ByName("kind"))
	if fd == nil {
		return "-"
	}
	return string(fd.Name())
}

// taskJSON is fleetctl's JSON of a task (taskJSONDoc).
type taskJSON struct {
	ID         string          `json:"id"`
	Tenant     string          `json:"tenant"`
	DeviceID   string          `json:"deviceId"`
	Kind       string          `json:"kind"`
	State      string          `json:"state"`
	Attempts   uint32          `json:"attempts"`
	CommandKey string          `json:"commandKey,omitempty"`
	Created    string          `json:"created,omitempty"`
	Updated    string          `json:"updated,omitempty"`
	Result     json.RawMessage `json:"result"`
	Fault      *faultJSON      `json:"fault"`
	Wake       *wakeJSON       `json:"wake,omitempty"`
}

type faultJSON struct {
	Code            uint32          `json:"code"`
	String          string          `json:"string"`
	Source          string          `json:"source,omitempty"`
	ParameterFaults json.RawMessage `json:"parameterFaults,omitempty"`
}

type wakeJSON struct {
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

func toTaskJSON(t *tasksv1.Task) taskJSON {
	j := taskJSON{ID: t.GetId(), Tenant: t.GetTenant(), DeviceID: t.GetDeviceId(), Kind: kindName(t.GetOperation()),
		State: stateName(t.GetState()), Attempts: t.GetAttempts(), CommandKey: t.GetCommandKey(), Result: json.RawMessage("null")}
	if ts := t.GetCreateTime(); ts != nil {
		j.Created = ts.AsTime().UTC().Format(time.RFC3339Nano)
	}
	if ts := t.GetUpdateTime(); ts != nil {
		j.Updated = ts.AsTime().UTC().Format(time.RFC3339Nano)
	}
	if r := t.GetResult(); r != nil {
		j.Result = protoJSON(r)
	}
	if f := t.GetFault(); f != nil {
		j.Fault = &faultJSON{Code: f.GetCode(), String: f.GetFaultString(),
			Source: strings.ToLower(strings.TrimPrefix(f.GetSource().String(), "FAULT_SOURCE_"))}
		if f.GetSource() == tasksv1.FaultSource_FAULT_SOURCE_UNSPECIFIED {
			j.Fault.Source = ""
		}
		if len(f.GetParameterFaults()) > 0 {
			items := make([]json.RawMessage, len(f.GetParameterFaults()))
			for i, pf := range f.GetParameterFaults() {
				items[i] = protoJSON(pf)
			}
			j.Fault.ParameterFaults, _ = json.Marshal(items)
		}
	}
	if w := t.GetWake(); w != nil {
		j.Wake = &wakeJSON{Status: strings.ToLower(strings.TrimPrefix(w.GetStatus().String(), "WAKE_STATUS_")), Detail: w.GetDetail()}
	}
	return j
}

// writeTask prints a task: as fleetctl's JSON, or as text (a summary line,
// then what it returned or why it failed).
func writeTask(w io.Writer, output string, t *tasksv1.Task) error {
	if output == "json" {
		b, err := json.Marshal(toTaskJSON(t))
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%s %s %s %s\n", t.GetId(), stateName(t.GetState()), kindName(t.GetOperation()), quoteIfNeeded(t.GetDeviceId()))
	if f := t.GetFault(); f != nil {
		if f.GetCode() == 0 && f.GetSource() != tasksv1.FaultSource_FAULT_SOURCE_UNSPECIFIED {
			// Not a CWMP fault: say whose it is instead of a code 0.
			fmt.Fprintf(bw, "  fault (%s): %s\n", strings.ToLower(strings.TrimPrefix(f.GetSource().String(), "FAULT_SOURCE_")), quoteIfNeeded(f.GetFaultString()))
		} else {
			fmt.Fprintf(bw, "  fault %d: %s\n", f.GetCode(), quoteIfNeeded(f.GetFaultString()))
		}
		for _, pf := range f.GetParameterFaults() {
			fmt.Fprintf(bw, "    %s: %d %s\n", pf.GetName(), pf.GetCode(), quoteIfNeeded(pf.GetFaultString()))
		}
	}
	if r := t.GetResult(); r != nil {
		writeResult(bw, r)
	}
	return bw.Flush()
}

func writeResult(w io.Writer, r *tasksv1.TaskResult) {
	switch k := r.GetKind().(type) {
	case *tasksv1.TaskResult_GetParameterValues:
		for _, v := range k.GetParameterValues.GetValues() {
			fmt.Fprintf(w, "  %s = %s (%s)\n", v.GetName(), quoteIfNeeded(v.GetValue()), v.GetType())
		}
	case *tasksv1.TaskResult_GetParameterNames:
		for _, p := range k.GetParameterNames.GetParameters() {
			rw := "r"
			if p.GetWritable() {
				rw = "rw"
			}
			fmt.Fprintf(w, "  %s %s\n", rw, p.GetName())
		}
	case *tasksv1.TaskResult_GetRpcMethods:
		fmt.Fprintf(w, "  %s\n", strings.Join(k.GetRpcMethods.GetMethods(), " "))
	case *tasksv1.TaskResult_AddObject:
		fmt.Fprintf(w, "  instance %d: %s\n", k.AddObject.GetInstanceNumber(), k.AddObject.GetObjectPath())
	case *tasksv1.TaskResult_Diagnostic:
		writeDiagnostic(w, k.Diagnostic)
	default:
		// Everything else in the API's JSON, on one line.
		b, err := protojson.Marshal(r)
		if err == nil && string(b) != "{}" {
			var compact bytes.Buffer
			_ = json.Compact(&compact, b)
			fmt.Fprintf(w, "  %s\n", compact.String())
		}
	}
}
