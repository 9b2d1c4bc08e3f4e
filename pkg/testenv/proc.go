package testenv

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is a server running as a child process.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string        // file holding its stdout and stderr
	done chan struct{} // closed once the process has exited and been reaped
	err  error         // Wait's result; read only after done is closed
}

// procSpec says how to run a child process.
type procSpec struct {
	name string // for messages
	bin  string
	args []string
	dir  string              // working directory
	log  string              // stdout and stderr go here (truncated)
	cred *syscall.Credential // run as this user; nil keeps ours
	env  []string            // nil inherits ours
}

// spawnReq asks the spawner thread to start a command.
type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var (
	spawnOnce sync.Once
	spawnCh   chan spawnReq
)

// spawn starts cmd from one goroutine locked to its OS thread for the life of
// the process. Linux delivers the parent-death signal when the thread that
// forked the child exits, not the process; a Go thread can exit under us, the
// locked and never-released spawner thread cannot.
func spawn(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnCh = make(chan spawnReq)
		go func() {
			runtime.LockOSThread()
			// Never unlocked: the thread must outlive every child.
			for r := range spawnCh {
				r.done <- r.cmd.Start()
			}
		}()
	})
	r := spawnReq{cmd: cmd, done: make(chan error, 1)}
	spawnCh <- r
	return <-r.done
}

// startProc starts a child process with its output in spec.log.
func startProc(spec procSpec) (*proc, error) {
	logf, err := os.OpenFile(spec.log, os.O_CREATE|os.O_WRONLY|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	// The child holds its own copy of the descriptor.
	defer logf.Close()

	cmd := exec.Command(spec.bin, spec.args...)
	cmd.Dir = spec.dir
	cmd.Env = spec.env
	// Files, not pipes: no copying goroutines, and the log survives us.
	cmd.Stdout = logf
	cmd.Stderr = logf
	cmd.SysProcAttr = childAttr(spec.cred)
	if err := spawn(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", spec.name, err)
	}
	p := &proc{name: spec.name, cmd: cmd, log: spec.log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// wait waits for the process to end on its own (for one-shot commands such as
// initdb) and returns an error carrying its output if it failed.
func (p *proc) wait(timeout time.Duration) error {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-p.done:
	case <-timer.C:
		p.stop(syscall.SIGKILL, 0)
		return fmt.Errorf("%s: not finished after %s; output:\n%s", p.name, timeout, p.logTail())
	}
	if p.err != nil {
		return fmt.Errorf("%s: %w; output:\n%s", p.name, p.err, p.logTail())
	}
	return nil
}

// exited tells whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends sig, then SIGKILL if the process has not ended within grace, and
// waits until it has been reaped.
func (p *proc) stop(sig syscall.Signal, grace time.Duration) {
	if p.exited() {
		return
	}
	_ = p.cmd.Process.Signal(sig)
	if grace > 0 {
		timer := time.NewTimer(grace)
		defer timer.Stop()
		select {
		case <-p.done:
			return
		case <-timer.C:
			fmt.Fprintf(os.Stderr, "testenv: %s ignored %v for %s; killing it\n", p.name, sig, grace)
		}
	}
	_ = p.cmd.Process.Kill()
	<-p.done
}

// portInUse tells whether the process ended because its port was taken
// between our choosing it and its binding it.
func (p *proc) portInUse() bool {
	if !p.exited() {
		return false
	}
	out, _ := os.ReadFile(p.log)
	return bytes.Contains(bytes.ToLower(out), []byte("address already in use"))
}

// logTail returns the end of the process's output for error messages.
func (p *proc) logTail() string {
	out, err := os.ReadFile(p.log)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", p.log, err)
	}
	const max = 4000
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return strings.TrimRight(string(out), "\n") + "\n(full log: " + p.log + ")"
}

// startOnFreePort runs start on a fresh free port until it succeeds, trying
// again only when the server reports that another process took the port in
// the meantime.
func startOnFreePort(name string, start func(port int) (*proc, error)) (int, error) {
	const attempts = 5
	var err error
	for range attempts {
		var port int
		if port, err = freePort(); err != nil {
			return 0, err
		}
		var p *proc
		p, err = start(port)
		if err == nil {
			return port, nil
		}
		if p == nil || !p.portInUse() {
			return 0, err
		}
	}
	return 0, fmt.Errorf("start %s: port taken by another process %d times in a row: %w", name, attempts, err)
}

// childEnv returns our environment without the variables whose names start
// with one of prefixes, so that settings meant for something else cannot
// change how a server runs.
func childEnv(prefixes ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}
