package testenv

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// NATSClusterServers is a cluster of three nats-server processes with
// JetStream that one test started (NATSCluster) and may break (Kill).
type NATSClusterServers struct {
	mu    sync.Mutex // guards the nodes' process state against concurrent Kill
	nodes []*natsNode
}

type natsNode struct {
	name       string
	port       int
	routePort  int
	dir        string
	p          *proc
	clientAddr string
}

// NATSCluster starts a NATS cluster on 127.0.0.1 for this test alone: three
// nats-server processes (found on PATH or in /usr/sbin), each with
// JetStream and its own store directory, routed to each other. It returns
// once every node answers JetStream requests (a meta leader is elected);
// the servers stop and their files go when the test ends.
//
// There is no environment variable naming an external cluster: the tests
// that use it kill its nodes.
func NATSCluster(t testing.TB) *NATSClusterServers {
	t.Helper()
	requireMain(t)
	c, err := startNATSCluster(t.Name())
	if c != nil {
		t.Cleanup(c.stop)
	}
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return c
}

// URL returns the client URLs of every node, comma-separated: what
// nats.Connect and fleetacs -nats.url take.
func (c *NATSClusterServers) URL() string { return strings.Join(c.URLs(), ",") }

// URLs returns the client URL of each node.
func (c *NATSClusterServers) URLs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = "nats://" + n.clientAddr
	}
	return out
}

// Kill ends node i (0, 1 or 2) with SIGKILL, as a crash would, and waits
// until it has exited.
func (c *NATSClusterServers) Kill(t testing.TB, i int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if i < 0 || i >= len(c.nodes) {
		t.Fatalf("testenv: no NATS node %d", i)
	}
	c.nodes[i].p.stop(syscall.SIGKILL, 0)
}

// StreamLeader returns the index of the node that leads stream now, as
// the stream's info says.
func (c *NATSClusterServers) StreamLeader(t testing.TB, stream string) int {
	t.Helper()
	var leader int
	WaitFor(t, 30*time.Second, func() error {
		nc, err := nats.Connect(c.URL(), nats.Timeout(2*time.Second), nats.MaxReconnects(0))
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, stream)
		if err != nil {
			return err
		}
		name := s.CachedInfo().Cluster.Leader
		for i, n := range c.nodes {
			if n.name == name {
				leader = i
				return nil
			}
		}
		return fmt.Errorf("stream %s has no leader among the nodes (leader %q)", stream, name)
	})
	return leader
}

func (c *NATSClusterServers) stop() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, n := range c.nodes {
		if n.p != nil {
			n.p.stop(syscall.SIGKILL, 0)
		}
	}
}

// natsServerBinary finds nats-server: on PATH, else where Debian puts it.
func natsServerBinary() (string, error) {
	if p, err := exec.LookPath("nats-server"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/nats-server", "/usr/local/sbin/nats-server"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("nats-server not found in PATH or /usr/sbin: %s", installHint)
}

var natsClusterSeq struct {
	mu sync.Mutex
	n  int
}

func startNATSCluster(name string) (*NATSClusterServers, error) {
	bin, err := natsServerBinary()
	if err != nil {
		return nil, fmt.Errorf("start nats cluster: %w", err)
	}
	root, err := tempRoot()
	if err != nil {
		return nil, fmt.Errorf("start nats cluster: %w", err)
	}
	natsClusterSeq.mu.Lock()
	natsClusterSeq.n++
	base := filepath.Join(root, fmt.Sprintf("natscluster-%d", natsClusterSeq.n))
	natsClusterSeq.mu.Unlock()
	// The nodes' ports must all be known before the first starts (each
	// names the others' routes): choose them, start, and start over with
	// new ports when another process took one in the meantime.
	const attempts = 5
	for attempt := range attempts {
		c := &NATSClusterServers{}
		for i := range 3 {
			port, err1 := freePort()
			route, err2 := freePort()
			if err1 != nil || err2 != nil {
				return nil, fmt.Errorf("start nats cluster: %v %v", err1, err2)
			}
			c.nodes = append(c.nodes, &natsNode{
				name: fmt.Sprintf("n%d", i+1), port: port, routePort: route,
				dir:        filepath.Join(base, fmt.Sprintf("try%d", attempt), fmt.Sprintf("n%d", i+1)),
				clientAddr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)),
			})
		}
		err := c.start(bin)
		if err == nil {
			return c, nil
		}
		portTaken := false
		for _, n := range c.nodes {
			if n.p != nil && n.p.portInUse() {
				portTaken = true
			}
		}
		c.stop()
		if !portTaken {
			return nil, fmt.Errorf("start nats cluster for %s: %w", name, err)
		}
	}
	return nil, fmt.Errorf("start nats cluster for %s: ports taken by other processes %d times in a row", name, attempts)
}

func (c *NATSClusterServers) start(bin string) error {
	for _, n := range c.nodes {
		if err := os.MkdirAll(n.dir, 0o700); err != nil {
			return err
		}
		var routes []string
		for _, o := range c.nodes {
			if o != n {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.routePort))
			}
		}
		conf := fmt.Sprintf(`server_name: %s
listen: 127.0.0.1:%d
jetstream {
  store_dir: %q
  max_memory_store: 64MB
  max_file_store: 1GB
}
cluster {
  name: fleetacs-test
  listen: 127.0.0.1:%d
  routes: [%s]
}
`, n.name, n.port, filepath.Join(n.dir, "js"), n.routePort, strings.Join(routes, ", "))
		confPath := filepath.Join(n.dir, "nats.conf")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			return err
		}
		p, err := startProc(procSpec{
			name: "nats-server " + n.name,
			bin:  bin,
			args: []string{"-c", confPath},
			dir:  n.dir,
			log:  filepath.Join(n.dir, "nats.log"),
		})
		if err != nil {
			return err
		}
		n.p = p
	}
	// Ready when every node serves JetStream requests: the cluster has a
	// meta leader and each node knows it.
	for _, n := range c.nodes {
		err := poll(60*time.Second, n.p.done, func() error {
			nc, err := nats.Connect("nats://"+n.clientAddr, nats.Timeout(2*time.Second), nats.MaxReconnects(0), nats.NoReconnect())
			if err != nil {
				return err
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			_, err = js.AccountInfo(ctx)
			return err
		})
		if err != nil {
			return fmt.Errorf("node %s: %w; output:\n%s", n.name, err, n.p.logTail())
		}
	}
	return nil
}
