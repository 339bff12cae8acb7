package testserver

import (
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/natstest"
)

// StoreEnv selects the store Start runs nodes on: unset for Pebble (the
// default), "nats" for a cluster store on an embedded NATS server of the
// test's own (one node of a cluster), so a suite can be run against
// either: MAILWIRE_TEST_STORE=nats go test ./engine/.
const StoreEnv = "MAILWIRE_TEST_STORE"

// NATS starts an embedded NATS JetStream server (n == 1) or cluster (n ==
// 3) for the test, stopped when it ends.
func NATS(t testing.TB, n int) *natstest.Cluster {
	t.Helper()
	c, err := natstest.Start(t.TempDir(), n)
	if err != nil {
		t.Fatalf("cannot start NATS: %v", err)
	}
	t.Cleanup(c.Shutdown)
	return c
}

var nodeSeq atomic.Int64

// OnNATS makes a node one of the cluster on c (replicas: as many as c has
// servers).
func OnNATS(c *natstest.Cluster) func(*app.Config) {
	name := fmt.Sprintf("node%d", nodeSeq.Add(1))
	return func(cfg *app.Config) {
		cfg.NATS = app.NATSConfig{URL: c.URL(), Node: name, Replicas: c.Size()}
	}
}

// clusterFromEnv returns the mod that runs a node on NATS when StoreEnv
// asks for it (nil otherwise).
func clusterFromEnv(t testing.TB) func(*app.Config) {
	if os.Getenv(StoreEnv) != "nats" {
		return nil
	}
	return OnNATS(NATS(t, 1))
}

// OnNATSEnv reports whether StoreEnv runs test nodes on NATS: tests of
// what only the Pebble store promises (event ids in log order, Pebble's
// metrics) skip those checks.
func OnNATSEnv() bool { return os.Getenv(StoreEnv) == "nats" }
