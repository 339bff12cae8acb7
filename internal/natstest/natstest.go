// Package natstest runs NATS JetStream servers in-process on loopback for
// tests and the local demo cluster: one server, or a cluster of three
// that can be stopped and restarted server by server on the same ports
// and store directories. Every server fsyncs every write
// (sync_interval: always), as docs/CLUSTER.md requires in production.
package natstest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is a set of JetStream servers forming one cluster (or a lone
// server when it has one).
type Cluster struct {
	mu      sync.Mutex
	opts    []*server.Options
	servers []*server.Server
}

// Start starts n servers (1, or 3 for a cluster) with their stores under
// dir. n == 1 is a plain server without clustering.
func Start(dir string, n int) (*Cluster, error) {
	c := &Cluster{}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	var routes []*url.URL
	if n > 1 {
		for i := 0; i < n; i++ {
			routes = append(routes, &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[n+i])})
		}
	}
	for i := 0; i < n; i++ {
		o := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       ports[i],
			JetStream:  true,
			StoreDir:   filepath.Join(dir, fmt.Sprintf("n%d", i+1)),
			SyncAlways: true,
			NoLog:      true,
			NoSigs:     true,
		}
		if n > 1 {
			o.Cluster = server.ClusterOpts{Name: "mw", Host: "127.0.0.1", Port: ports[n+i]}
			o.Routes = routes
		}
		c.opts = append(c.opts, o)
		c.servers = append(c.servers, nil)
	}
	for i := range c.opts {
		if err := c.start(i); err != nil {
			c.Shutdown()
			return nil, err
		}
	}
	if err := c.WaitReady(30 * time.Second); err != nil {
		c.Shutdown()
		return nil, err
	}
	return c, nil
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func (c *Cluster) start(i int) error {
	s, err := server.NewServer(c.opts[i].Clone())
	if err != nil {
		return fmt.Errorf("cannot create nats server %d: %w", i+1, err)
	}
	s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return fmt.Errorf("nats server %d did not start", i+1)
	}
	c.mu.Lock()
	c.servers[i] = s
	c.mu.Unlock()
	return nil
}

// URL is the comma-separated client URLs of every server.
func (c *Cluster) URL() string {
	var u []string
	for _, o := range c.opts {
		u = append(u, fmt.Sprintf("nats://127.0.0.1:%d", o.Port))
	}
	return strings.Join(u, ",")
}

// ServerURL is server i's client URL.
func (c *Cluster) ServerURL(i int) string { return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port) }

// Size is the number of servers.
func (c *Cluster) Size() int { return len(c.opts) }

// Stop shuts server i down (its store stays for Restart).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	s := c.servers[i]
	c.servers[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Shutdown()
		s.WaitForShutdown()
	}
}

// Restart starts server i again on its ports and store.
func (c *Cluster) Restart(i int) error { return c.start(i) }

// Shutdown stops every server.
func (c *Cluster) Shutdown() {
	for i := range c.opts {
		c.Stop(i)
	}
}

// WaitReady waits until every running server reports JetStream healthy
// (a meta leader elected and known to all).
func (c *Cluster) WaitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var problem error
		c.mu.Lock()
		for i, s := range c.servers {
			if s == nil {
				continue
			}
			if st := s.Healthz(&server.HealthzOptions{}); st.Error != "" {
				problem = fmt.Errorf("nats server %d: %s", i+1, st.Error)
				break
			}
		}
		c.mu.Unlock()
		if problem == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.Join(errors.New("nats cluster not ready"), problem)
		}
		time.Sleep(20 * time.Millisecond) // polling interval
	}
}
