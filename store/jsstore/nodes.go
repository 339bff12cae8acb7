package jsstore

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// nodes is the cluster's membership as this node sees it: every node
// refreshes its key in bucketNodes every nodeBeat, and a key idle for
// nodeTTL expires (the node died or lost NATS).
type nodes struct {
	s   *Store
	key string

	mu   sync.RWMutex
	live map[string]time.Time
}

// nodeKey makes a node name a valid bucket key.
func nodeKey(name string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '-'
	}, name)
}

func (s *Store) startNodes() error {
	n := &nodes{s: s, key: nodeKey(s.opts.Node), live: map[string]time.Time{}}
	s.nodes = n
	if err := n.beat(); err != nil {
		return err
	}
	w, err := s.nodesKV.WatchAll(s.ctx)
	if err != nil {
		return err
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-s.ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					continue
				}
				n.mu.Lock()
				if e.Operation() == jetstream.KeyValuePut {
					n.live[e.Key()] = time.Now()
				} else {
					delete(n.live, e.Key())
				}
				n.mu.Unlock()
			}
		}
	}()
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(nodeBeat)
		defer t.Stop()
		for {
			select {
			case <-s.ctx.Done():
				return
			case <-t.C:
				if err := n.beat(); err != nil && s.ctx.Err() == nil {
					s.log.Debug("cannot refresh node membership", "error", err)
				}
			}
		}
	}()
	return nil
}

func (n *nodes) beat() error {
	ctx, cancel := context.WithTimeout(n.s.ctx, nodeBeat)
	defer cancel()
	_, err := n.s.nodesKV.Put(ctx, n.key, []byte(time.Now().UTC().Format(time.RFC3339)))
	return err
}

// NodeKey is this node's name as other nodes see it.
func (s *Store) NodeKey() string { return s.nodes.key }

// LiveNodes lists the nodes whose membership key is current (this one
// included), sorted.
func (s *Store) LiveNodes() []string {
	n := s.nodes
	n.mu.RLock()
	defer n.mu.RUnlock()
	out := make([]string, 0, len(n.live))
	for k, seen := range n.live {
		// A node whose refreshes stopped is gone at once here, not only
		// when the bucket expires its key.
		if time.Since(seen) < nodeTTL {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

// Seq returns the log position of an event (waiting for the index when
// the event is recent and not in it yet).
func (s *Store) Seq(evtID string) (uint64, bool) {
	e, ok := s.idx.eventWait(evtID)
	return e.seq, ok
}

// WaitApplied waits until this node's index (and its fan-out) has passed
// the log position seq; false when it has not within d.
func (s *Store) WaitApplied(seq uint64, d time.Duration) bool { return s.idx.waitApplied(seq, d) }
