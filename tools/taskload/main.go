// Command taskload measures the tasks path of a running FleetACS through
// its public gRPC API (docs/tasks.md), beside cpesim, which plays the
// devices:
//
//	roundtrip   one task at a time per worker (-concurrency), each a
//	            GetParameterValues with a connection request, waiting for
//	            its result: the API call to result latency, p50 and p99.
//	throughput  one GetParameterValues task for every device at once
//	            (CreateTasks in batches), delivered by the devices' own
//	            sessions: tasks done per second, counted from WatchTasks.
//
// It prints a summary; scripts/bench-tasks.sh runs it and formats the
// figures for BENCHMARKS.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
)

type config struct {
	api, tokenFile, tenant, mode, param string
	match, then                         string
	n, concurrency, perDevice           int
	wait, timeout                       time.Duration
}

func main() {
	os.Exit(run(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var c config
	fs := flag.NewFlagSet("taskload", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.api, "api", "127.0.0.1:9300", "public gRPC API address")
	fs.StringVar(&c.tokenFile, "token-file", "data/admin.token", "file holding an operator or admin token")
	fs.StringVar(&c.tenant, "tenant", "default", "tenant of the devices")
	fs.StringVar(&c.mode, "mode", "roundtrip", "roundtrip or throughput")
	fs.StringVar(&c.param, "param", "Device.DeviceInfo.UpTime", "parameter each task reads")
	fs.StringVar(&c.match, "match", "", "only devices whose id contains this (e.g. a cpesim -prefix)")
	fs.StringVar(&c.then, "then", "", "throughput: once every task is queued, run this shell command (the devices' load, e.g. cpesim) and count from its start; it is interrupted when every task has ended")
	fs.IntVar(&c.n, "n", 1000, "roundtrip: tasks in all")
	fs.IntVar(&c.concurrency, "concurrency", 4, "roundtrip: tasks in flight")
	fs.DurationVar(&c.wait, "wait", 10*time.Second, "roundtrip: how long each CreateTask waits for its result")
	fs.DurationVar(&c.timeout, "timeout", 5*time.Minute, "throughput: give up after this long")
	fs.IntVar(&c.perDevice, "per-device", 1, "throughput: tasks queued for each device (a session runs up to -sessions.max-tasks-per-session of them)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	token, err := os.ReadFile(c.tokenFile)
	if err != nil {
		fmt.Fprintf(stderr, "taskload: read token: %v\n", err)
		return 2
	}
	cc, err := grpc.NewClient(c.api, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		fmt.Fprintf(stderr, "taskload: %v\n", err)
		return 2
	}
	defer cc.Close()
	ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+strings.TrimSpace(string(token)))
	devices, err := listDevices(ctx, inventoryv1.NewInventoryServiceClient(cc), c.tenant)
	devices = slices.DeleteFunc(devices, func(id string) bool { return !strings.Contains(id, c.match) })
	if err != nil {
		fmt.Fprintf(stderr, "taskload: %v\n", err)
		return 1
	}
	if len(devices) == 0 {
		fmt.Fprintln(stderr, "taskload: the tenant has no devices")
		return 1
	}
	tasks := tasksv1.NewTasksServiceClient(cc)
	switch c.mode {
	case "roundtrip":
		err = roundtrip(ctx, tasks, c, devices, stdout)
	case "throughput":
		err = throughput(ctx, tasks, c, devices, stdout)
	default:
		fmt.Fprintf(stderr, "taskload: unknown -mode %q\n", c.mode)
		return 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "taskload: %v\n", err)
		return 1
	}
	return 0
}

func listDevices(ctx context.Context, inv inventoryv1.InventoryServiceClient, tenant string) ([]string, error) {
	var ids []string
	token := ""
	for {
		resp, err := inv.ListDevices(ctx, &inventoryv1.ListDevicesRequest{Tenant: tenant, PageSize: 1000, PageToken: token})
		if err != nil {
			return nil, fmt.Errorf("list devices: %w", err)
		}
		for _, d := range resp.GetDevices() {
			ids = append(ids, d.GetId())
		}
		if token = resp.GetNextPageToken(); token == "" {
			return ids, nil
		}
	}
}

func gpv(name string) *tasksv1.Operation {
	return &tasksv1.Operation{Kind: &tasksv1.Operation_GetParameterValues{GetParameterValues: &tasksv1.GetParameterValues{Names: []string{name}}}}
}

// roundtrip runs c.n tasks, c.concurrency at a time, each on the next
// device in turn, each waking its device and waiting for its result.
func roundtrip(ctx context.Context, tasks tasksv1.TasksServiceClient, c config, devices []string, out io.Writer) error {
	var (
		next     atomic.Int64
		mu       sync.Mutex
		lat      []time.Duration
		notDone  = map[string]int{}
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	for range c.concurrency {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= c.n {
					return
				}
				t0 := time.Now()
				resp, err := tasks.CreateTask(ctx, &tasksv1.CreateTaskRequest{
					Tenant: c.tenant, DeviceId: devices[i%len(devices)], Operation: gpv(c.param),
					Options: &tasksv1.TaskOptions{ConnectionRequest: true},
					WaitMs:  uint32(c.wait / time.Millisecond),
				})
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = err
					}
				case resp.GetTask().GetState() != tasksv1.TaskState_TASK_STATE_DONE:
					notDone[resp.GetTask().GetState().String()]++
				default:
					lat = append(lat, d)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr != nil {
		return fmt.Errorf("create task: %w", firstErr)
	}
	slices.Sort(lat)
	fmt.Fprintf(out, "roundtrip: %d tasks done of %d in %s (%d in flight, %d devices); not done: %v\n",
		len(lat), c.n, elapsed.Round(time.Millisecond), c.concurrency, len(devices), notDone)
	if len(lat) > 0 {
		fmt.Fprintf(out, "task round trip: p50 %s, p90 %s, p99 %s, max %s\n",
			pct(lat, 50), pct(lat, 90), pct(lat, 99), lat[len(lat)-1].Round(10*time.Microsecond))
	}
	return nil
}

func pct(s []time.Duration, p int) time.Duration {
	i := (len(s)*p + 99) / 100
	if i > 0 {
		i--
	}
	return s[i].Round(10 * time.Microsecond)
}

// throughput queues one task per device and counts them done.
func throughput(ctx context.Context, tasks tasksv1.TasksServiceClient, c config, devices []string, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	watch, err := tasks.WatchTasks(ctx, &tasksv1.WatchTasksRequest{Tenant: c.tenant})
	if err != nil {
		return fmt.Errorf("watch tasks: %w", err)
	}
	// Every task that ends, in the order the watch saw them: a task may
	// end before the CreateTasks call that queued it has answered (its
	// device was in session). The counting below reads only what was
	// appended since it last looked, so that the tool's own CPU stays
	// small beside the platform it measures on the same machine (it
	// shares the cores with fleetacs and cpesim).
	type end struct {
		id    string
		at    time.Time
		state tasksv1.TaskState
	}
	var (
		mu     sync.Mutex
		ends   []end
		closed error
		change = make(chan struct{}, 1)
	)
	go func() {
		for {
			resp, err := watch.Recv()
			mu.Lock()
			if err != nil {
				closed = err
				mu.Unlock()
				select {
				case change <- struct{}{}:
				default:
				}
				return
			}
			if st := resp.GetTask().GetState(); st != tasksv1.TaskState_TASK_STATE_QUEUED && st != tasksv1.TaskState_TASK_STATE_DISPATCHED {
				ends = append(ends, end{resp.GetTask().GetId(), time.Now(), st})
			}
			mu.Unlock()
			select {
			case change <- struct{}{}:
			default:
			}
		}
	}()
	ids := make([]string, 0, len(devices)*c.perDevice)
	start := time.Now()
	for range max(c.perDevice, 1) {
		for i := 0; i < len(devices); i += 1000 {
			batch := devices[i:min(i+1000, len(devices))]
			resp, err := tasks.CreateTasks(ctx, &tasksv1.CreateTasksRequest{Tenant: c.tenant, DeviceIds: batch, Operation: gpv(c.param)})
			if err != nil {
				return fmt.Errorf("create tasks: %w", err)
			}
			for _, r := range resp.GetResults() {
				if r.GetTask() == nil {
					return fmt.Errorf("create task for %s: %s", r.GetDeviceId(), r.GetErrorMessage())
				}
				ids = append(ids, r.GetTask().GetId())
			}
		}
	}
	queuedAt := time.Now()
	if c.then != "" {
		cmd := exec.CommandContext(ctx, "sh", "-c", c.then)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		cmd.Cancel = func() error { return cmd.Process.Signal(os.Interrupt) }
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("start -then: %w", err)
		}
		defer func() {
			_ = cmd.Process.Signal(os.Interrupt)
			_ = cmd.Wait()
		}()
		fmt.Fprintf(out, "throughput: %d tasks queued in %s with the devices idle; then %q\n", len(ids), queuedAt.Sub(start).Round(time.Millisecond), c.then)
		start = time.Now()
		queuedAt = start
	}
	// wanted: ids's tasks not yet seen ending (a repeated end of the
	// same id counts once).
	wanted := make(map[string]bool, len(ids))
	for _, id := range ids {
		wanted[id] = true
	}
	n := 0
	var (
		first, last        time.Time
		states             = map[string]int{}
		endedWhileQueueing int
		read               int
	)
	for {
		mu.Lock()
		fresh, err := ends[read:], closed
		read = len(ends)
		mu.Unlock()
		for _, e := range fresh {
			if !wanted[e.id] {
				continue
			}
			delete(wanted, e.id)
			n++
			states[e.state.String()]++
			if e.at.After(last) {
				last = e.at
			}
			if first.IsZero() || e.at.Before(first) {
				first = e.at
			}
			if e.at.Before(queuedAt) {
				endedWhileQueueing++
			}
		}
		if len(wanted) == 0 {
			span := last.Sub(start)
			fmt.Fprintf(out, "throughput: %d tasks queued in %s; all ended %s after the first CreateTasks; %v\n",
				len(ids), queuedAt.Sub(start).Round(time.Millisecond), span.Round(time.Millisecond), states)
			fmt.Fprintf(out, "tasks delivered: %.1f/s (from the first CreateTasks to the last task's end)\n", float64(n)/span.Seconds())
			if steady := last.Sub(first); c.then != "" && n > 1 && steady > 0 {
				// The load command's own start (a simulator building its
				// devices and opening its connections) is not delivery:
				// the rate between the first task's end and the last's
				// leaves it out.
				fmt.Fprintf(out, "tasks delivered from the first end: %.1f/s (the first ended %s after the start, the other %d in %s)\n",
					float64(n-1)/steady.Seconds(), first.Sub(start).Round(time.Millisecond), n-1, steady.Round(time.Millisecond))
			}
			if after := last.Sub(queuedAt); after > 0 {
				fmt.Fprintf(out, "tasks delivered once all were queued: %.1f/s (%d ended while queueing)\n", float64(n-endedWhileQueueing)/after.Seconds(), endedWhileQueueing)
			}
			return nil
		}
		if err != nil {
			return fmt.Errorf("watch ended after %d of %d tasks: %w", n, len(ids), errors.Join(err, ctx.Err()))
		}
		<-change
	}
}
