package jsstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/promtext"
	"github.com/mailwire/mailwire/store"
)

// Options configures Open.
type Options struct {
	// URL is one or more NATS server URLs, comma-separated.
	URL string
	// Node names this node (in membership and the NATS connection name).
	Node string
	// Replicas of every stream and bucket (3 in production; 1 for a
	// single dev server).
	Replicas int
	// CredsFile and TLSCA secure the connection (both optional).
	CredsFile, TLSCA string
	// MaxEventBytes is --max-event-bytes (0: store.DefaultMaxEventBytes).
	MaxEventBytes int
	// PublicURL is --public-url: the base of absolute attachment URLs in
	// events ("" keeps them relative).
	PublicURL string
	// Retention bounds how long the log keeps events and messages: the
	// streams' max age (the longer of --retention and --failed-retention).
	Retention time.Duration
	// ConnectTimeout bounds Open's wait for a reachable JetStream.
	ConnectTimeout time.Duration
	Logger         *slog.Logger
}

// Store is the JetStream implementation of store.Store.
type Store struct {
	opts Options
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream

	events, due     jetstream.Stream
	dirKV, stateKV  jetstream.KeyValue
	idemKV, nodesKV jetstream.KeyValue
	blobs           jetstream.ObjectStore
	marks           *readMarks // bucketThreads (threads.go)

	maxEventBytes int
	maxPayload    int

	dir   *directory
	idx   *index
	nodes *nodes
	dl    *deliveries
	m     *storeMetrics

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	closed    atomic.Bool
	closeOnce sync.Once
}

var _ store.Store = (*Store)(nil)

// Open connects to NATS, makes sure every stream, bucket and consumer
// exists with its settings (names.go), loads the directory and builds the
// local index of the event log; it returns once the node is current.
func Open(opts Options) (*Store, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Replicas <= 0 {
		opts.Replicas = 3
	}
	if opts.ConnectTimeout <= 0 {
		opts.ConnectTimeout = 30 * time.Second
	}
	if opts.Retention <= 0 {
		opts.Retention = 720 * time.Hour
	}
	s := &Store{opts: opts, log: opts.Logger.With("component", "jetstream"), maxEventBytes: opts.MaxEventBytes}
	if s.maxEventBytes <= 0 {
		s.maxEventBytes = store.DefaultMaxEventBytes
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.m = newStoreMetrics(s)
	if err := s.connect(); err != nil {
		s.cancel()
		return nil, err
	}
	if err := s.setup(); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Store) connect() error {
	o := []nats.Option{
		nats.Name("mailwire " + s.opts.Node),
		// Fail fast while disconnected: a publish must never wait in a
		// client buffer and be reported as failed, then stored later.
		nats.ReconnectBufSize(-1),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.PingInterval(5 * time.Second),
		nats.MaxPingsOutstanding(2),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if s.closed.Load() {
				return // Close drains the connection
			}
			s.log.Warn("lost the NATS connection: ingest is refused until it is back", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			s.m.reconnects.Inc()
			s.log.Info("NATS connection back", "server", nc.ConnectedUrlRedacted())
			if s.dir != nil {
				s.dir.restart()
			}
		}),
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			subj := ""
			if sub != nil {
				subj = sub.Subject
			}
			s.log.Warn("NATS error", "subject", subj, "error", err)
		}),
	}
	if s.opts.CredsFile != "" {
		o = append(o, nats.UserCredentials(s.opts.CredsFile))
	}
	if s.opts.TLSCA != "" {
		o = append(o, nats.RootCAs(s.opts.TLSCA))
	}
	nc, err := nats.Connect(s.opts.URL, o...)
	if err != nil {
		return fmt.Errorf("cannot connect to NATS at %s: %w", s.opts.URL, err)
	}
	s.nc = nc
	s.maxPayload = int(nc.MaxPayload())
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		nc.Close()
		return fmt.Errorf("cannot use JetStream: %w", err)
	}
	s.js = js
	// JetStream answers once a meta leader is elected (a cluster that is
	// still forming, or a server without JetStream, does not).
	deadline := time.Now().Add(s.opts.ConnectTimeout)
	for {
		ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			break
		}
		if errors.Is(err, jetstream.ErrJetStreamNotEnabled) || errors.Is(err, jetstream.ErrJetStreamNotEnabledForAccount) || time.Now().After(deadline) {
			nc.Close()
			return fmt.Errorf("NATS at %s has no usable JetStream: %w", s.opts.URL, err)
		}
		time.Sleep(200 * time.Millisecond) // waiting for a meta leader
	}
	return nil
}

// Conn is the node's NATS connection (the cluster package's requests
// between nodes use it).
func (s *Store) Conn() *nats.Conn { return s.nc }

// Node is this node's name.
func (s *Store) Node() string { return s.opts.Node }

// ReadOnly implements store.Store: a JetStream store always takes writes
// (while NATS is reachable; see Health).
func (s *Store) ReadOnly() bool { return false }

// Health implements store.Store: why the store cannot take writes now
// ("" when it can).
func (s *Store) Health() string {
	if s.closed.Load() {
		return "the store is closed"
	}
	if st := s.nc.Status(); st != nats.CONNECTED {
		return "NATS is unreachable (" + st.String() + ")"
	}
	return ""
}

// unavailable wraps an error of a write that could not be made durable
// because NATS is unreachable or did not answer in time.
func (s *Store) unavailable(what string, err error) error {
	return fmt.Errorf("%w: cannot %s: %v", store.ErrUnavailable, what, err)
}

// writable reports store.ErrUnavailable while NATS is unreachable, so a
// write fails at once instead of timing out.
func (s *Store) writable() error {
	if why := s.Health(); why != "" {
		return fmt.Errorf("%w: %s", store.ErrUnavailable, why)
	}
	return nil
}

// Close stops the deliveries and watchers and closes the connection.
// The app stops ingest before it closes the store; a publish still
// waiting for its ack when Close cancels it is answered
// store.ErrUnconfirmed ("may have been stored"), and what was sent
// reaches the server (the connection drains).
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		if s.dl != nil {
			s.dl.end()
		}
		s.closed.Store(true)
		if s.nodes != nil {
			// Leave the membership at once: the other nodes stop waiting
			// for this one's answers instead of for nodeTTL.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			_ = s.nodesKV.Delete(ctx, s.nodes.key)
			cancel()
		}
		s.cancel()
		if s.dir != nil {
			s.dir.stop()
		}
		if s.idx != nil {
			s.idx.stop()
		}
		s.wg.Wait()
		if s.nc != nil {
			// Drain lets acks and publishes in flight reach the server.
			if err := s.nc.Drain(); err != nil {
				s.nc.Close()
			}
			for !s.nc.IsClosed() {
				time.Sleep(5 * time.Millisecond) // Drain completes asynchronously
			}
		}
	})
	return nil
}

// opCtx is a context for one store operation.
func (s *Store) opCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(s.ctx, publishTimeout)
}

// storeMetrics are the cluster store's own metrics (docs/CLUSTER.md).
type storeMetrics struct {
	set        *metrics.Set
	publish    *metrics.PrometheusHistogram
	reconnects *metrics.Counter
	pubErrors  *metrics.Counter
	pubRetries *metrics.Counter
	stored     *metrics.Counter
}

func newStoreMetrics(s *Store) *storeMetrics {
	set := metrics.NewSet()
	m := &storeMetrics{
		set:        set,
		publish:    set.NewPrometheusHistogramExt(promtext.Describe("mailwire_nats_publish_seconds", "Time for JetStream to acknowledge a publish (replicated and stored)."), promtext.StorageBuckets),
		reconnects: set.NewCounter(promtext.Describe("mailwire_nats_reconnects_total", "Reconnections to NATS.")),
		pubErrors:  set.NewCounter(promtext.Describe("mailwire_nats_publish_errors_total", "JetStream publishes that failed.")),
		pubRetries: set.NewCounter(promtext.Describe("mailwire_nats_publish_retries_total", "JetStream publishes sent again after a try went unanswered (a lost server or leader change); the same Nats-Msg-Id makes a stored one a duplicate.")),
		stored:     set.NewCounter(promtext.Describe("mailwire_events_stored_total", "Events durably stored.")),
	}
	set.NewGauge(promtext.Describe("mailwire_nats_connected", "1 while the node is connected to NATS."), func() float64 {
		if s.nc != nil && s.nc.IsConnected() {
			return 1
		}
		return 0
	})
	return m
}

// WriteMetrics implements store.Store.
func (s *Store) WriteMetrics(w io.Writer) {
	s.m.set.WritePrometheus(w)
	if s.dl != nil {
		s.dl.writeMetrics(w)
	}
	if s.idx != nil {
		metrics.WriteGaugeUint64(w, promtext.Describe("mailwire_cluster_index_events", "Events in this node's in-memory index of the shared log."), uint64(s.idx.size()))
		metrics.WriteGaugeUint64(w, promtext.Describe("mailwire_cluster_index_applied_seq", "Last stream sequence applied to this node's index."), s.idx.appliedSeq())
	}
}
