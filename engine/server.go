package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/lesismal/nbio"
	"github.com/lesismal/nbio/nbhttp"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/engine/pull"
	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/limits"
	"github.com/mailwire/mailwire/store"
)

// Config configures the Server. Zero fields take the documented default
// (applied by setDefaults). The settings a flag sets are validated by
// internal/app's Config.Validate.
type Config struct {
	// Addr is the HTTP listen address. Default "127.0.0.1:8080"; ":0"
	// picks a free port (see Server.Addr).
	Addr string
	// AdminToken enables /admin/v1 with this bearer token; "" disables it.
	AdminToken string
	// MaxMessageSize is the largest inbound message in bytes. Default
	// ingest.DefaultMaxMessageSize (the node sets ingest's
	// --max-message-size).
	MaxMessageSize int
	// AllowPrivateWebhooks lets webhook URLs point at loopback/private
	// addresses (development and tests).
	AllowPrivateWebhooks bool
	// WS configures the WebSocket endpoint (its Metrics and Logger are
	// the engine's).
	WS ws.Config
	// AuthFailureBurst is how many failed WebSocket authentications one
	// client address may make per AuthFailureWindow before its upgrades
	// are answered 429 with Retry-After (PROTOCOL.md §1). Default 5 per
	// 10s.
	AuthFailureBurst  int
	AuthFailureWindow time.Duration
	// HeadTimeout closes a new connection that has not sent a complete
	// request head within it. Default 10s.
	HeadTimeout time.Duration
	// IdleTimeout is the deadline for an HTTP request to arrive whole on a
	// connection (and for a kept-alive connection to stay idle); a slowly
	// trickled request is dropped at it. Default 60s.
	IdleTimeout time.Duration
	// PullMaxHeldPerAccount and PullMaxHeld bound the pull API's held
	// requests (and MCP waits) per account and in all; past them a pull
	// that would wait is answered 429. Defaults 10 and 10,000.
	PullMaxHeldPerAccount int
	PullMaxHeld           int
	// Pollers is nbio's poller goroutine count. Default 1 (NumCPU/4, at
	// least 1: handlers run on the task pool, not on pollers).
	Pollers int
	// Metrics is the set every engine metric is registered in; /metrics
	// writes it plus process and Go runtime metrics. Default: a new set.
	Metrics *metrics.Set
	// ExtraMetrics are written by /metrics after Metrics (other
	// components' sets).
	ExtraMetrics []*metrics.Set
	// Logger; nil means slog.Default().
	Logger *slog.Logger
	// Version is reported by /healthz.
	Version string
	// AccessLog logs one line per HTTP request (--access-log): method,
	// path, route, status, duration, body bytes, client address and
	// request id.
	AccessLog bool
	// PublicURL (--public-url) is put before attachment URLs in message
	// answers, as the store does in events.
	PublicURL string
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:8080"
	}
	if c.MaxMessageSize <= 0 {
		c.MaxMessageSize = ingest.DefaultMaxMessageSize
	}
	if c.AuthFailureBurst <= 0 {
		c.AuthFailureBurst = 5
	}
	if c.AuthFailureWindow <= 0 {
		c.AuthFailureWindow = 10 * time.Second
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = httpKeepalive
	}
	if c.HeadTimeout <= 0 {
		c.HeadTimeout = headTimeout
	}
	if c.Pollers <= 0 {
		c.Pollers = 1
	}
	if c.PullMaxHeldPerAccount <= 0 {
		c.PullMaxHeldPerAccount = pull.DefaultMaxPerAccount
	}
	if c.PullMaxHeld <= 0 {
		c.PullMaxHeld = pull.DefaultMaxTotal
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Deps are the components the engine serves.
type Deps struct {
	DB       store.Store
	Ingest   *ingest.Service
	Delivery *delivery.Dispatcher
	Limits   Limits
	// MCP serves POST /v1/mcp (internal/mcpserver.Handler) once the route
	// has authenticated the Bearer key; nil answers 404.
	MCP http.Handler
}

// Limits are the resource budgets the HTTP edge enforces (shared with
// SMTP, see internal/limits).
type Limits struct {
	Memory *limits.Memory
	Disk   *limits.Disk
	// HTTP admits HTTP and WebSocket connections (descriptor budget and
	// --http-max-conns-per-ip).
	HTTP *limits.Gate
	// Descriptors is the budget HTTP and SMTP share.
	Descriptors *limits.Descriptors
}

// Server is the HTTP + WebSocket edge.
type Server struct {
	cfg    Config
	deps   Deps
	log    *slog.Logger
	access *slog.Logger // component=access: the --access-log lines
	m      *emetrics

	nb        *nbhttp.Engine
	acceptLog limits.RateLog
	conns     edgeConns // budget slots and unproven connections (unproven.go)
	pool      *workPool
	router    *router
	hub       *ws.Hub
	puller    *puller // the pull API's held requests
	throttle  *authThrottle
	ops       rateWindow // readings for /admin/v1/stats rates
	due       dueCache   // the due index's count for /metrics

	// handoff orders a connection's setup (done by nbhttp's accept
	// goroutine) before its first read on the poller goroutine, in a way
	// the race detector can see: the kernel's epoll hand-off is invisible
	// to it. Released in onOpen, acquired in onData.
	handoff atomic.Uint64

	addr     atomic.Pointer[string]
	draining atomic.Bool
	started  atomic.Bool
	stopOnce sync.Once
}

// New builds a Server; Start makes it listen.
func New(cfg Config, deps Deps) *Server {
	cfg.setDefaults()
	s := &Server{cfg: cfg, deps: deps, log: cfg.Logger.With("component", "engine"), access: cfg.Logger.With("component", "access")}
	s.m = newEngineMetrics(cfg.Metrics, cfg.Version)
	wcfg := cfg.WS
	wcfg.Metrics, wcfg.Logger = cfg.Metrics, cfg.Logger
	s.hub = ws.New(wcfg, wsBackend{db: deps.DB, d: deps.Delivery})
	// Changes made on other nodes of a cluster reach this node's sockets
	// (on one node the handlers that make them tell the hub directly).
	deps.DB.OnChange(func(c store.DirectoryChange) {
		if c.RevokedKey != "" {
			s.hub.KeyRevoked(c.RevokedKey)
		}
		if c.DeletedInbox != "" {
			s.hub.InboxDeleted(c.DeletedInboxAccount, c.DeletedInbox)
		}
	})
	s.throttle = newAuthThrottle(cfg.AuthFailureBurst, cfg.AuthFailureWindow, s.log)
	s.acceptLog = limits.RateLog{Log: s.log, Every: 5 * time.Second}
	s.conns.init(s)
	s.puller = newPuller(s, pull.Config{MaxPerAccount: cfg.PullMaxHeldPerAccount, MaxTotal: cfg.PullMaxHeld})
	deps.DB.OnStored(s.puller.hub.Stored)
	s.router = s.routes()
	maxBody := s.maxInboundBody()
	s.pool = newWorkPool(handlerWorkers, handlerIdle, s.log)
	s.nb = nbhttp.NewEngine(nbhttp.Config{
		ServerExecutor:  s.pool.Go,
		Name:            "mailwire",
		Network:         "tcp",
		Addrs:           []string{cfg.Addr},
		NPoller:         cfg.Pollers,
		ReadLimit:       maxBody + httpHeaderSlack,
		MaxHTTPBodySize: maxBody,
		KeepaliveTime:   cfg.IdleTimeout,
		WriteTimeout:    cfg.IdleTimeout,
		Handler:         http.HandlerFunc(s.serveHTTP),
		MaxLoad:         nbio.MaxOpenFiles,
		// nbio's read buffer is shared per poller; 64 KiB reads whole
		// frames and request heads in one syscall.
		ReadBufferSize: 64 << 10,
	})
	// The request gate goes in front of nbhttp's processor when a
	// connection opens; every read is routed to the connection's current
	// session (the HTTP parser, a WebSocket).
	s.nb.Engine.OnOpen(s.onOpen)
	s.nb.OnClose(s.onClose)
	s.nb.Engine.OnData(s.onData)
	s.nb.Engine.OnWrittenSize(s.onWritten)
	return s
}

// maxInboundBody is the largest request body accepted: an inbound message
// as JSON carries attachments in base64 (4/3 of the message size).
func (s *Server) maxInboundBody() int {
	return s.cfg.MaxMessageSize/3*4 + maxJSONBody
}

// Hub exposes the WebSocket side as delivery's Pusher.
func (s *Server) Pusher() delivery.Pusher { return s.hub }

// Start listens and serves until Shutdown.
func (s *Server) Start() error {
	// Bind first: nbhttp's Start hangs in its own cleanup when its listen
	// fails (nbio v1.6.8), so it must only ever get a listener that exists.
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen on %s: %w", s.cfg.Addr, err)
	}
	edge := &edgeListener{Listener: ln, s: s}
	s.nb.Listen = func(string, string) (net.Listener, error) { return edge, nil }
	if err := s.nb.Start(); err != nil {
		_ = ln.Close()
		return fmt.Errorf("cannot start the HTTP engine on %s: %w", s.cfg.Addr, err)
	}
	addr := ln.Addr().String()
	s.addr.Store(&addr)
	s.started.Store(true)
	s.hub.Start()
	s.puller.start()
	s.log.Info("serving HTTP and WebSockets", "addr", addr)
	return nil
}

// Addr is the address the server listens on (with the real port when the
// configured one was 0).
func (s *Server) Addr() string {
	if p := s.addr.Load(); p != nil {
		return *p
	}
	return s.cfg.Addr
}

// Drain starts the shutdown: /readyz answers 503, and so do new upgrades
// and API calls; the listener stays open (PROTOCOL.md §8).
// Held pull requests are answered at once (empty pages).
func (s *Server) Drain() {
	s.draining.Store(true)
	s.puller.drain()
}

// CloseWebSockets closes every WebSocket with 1001 (and those that race
// with it as they open). Drain first.
func (s *Server) CloseWebSockets() {
	s.Drain()
	s.hub.Drain()
}

// Shutdown drains, closes the WebSockets, waits for them to go (up to
// ctx) and stops the engine. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.CloseWebSockets()
	var err error
	s.stopOnce.Do(func() {
		if !s.started.Load() {
			return
		}
		s.hub.WaitEmpty(ctx)
		s.hub.Stop()
		s.puller.shutdown(ctx)
		err = s.nb.Shutdown(ctx)
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("cannot close every connection in time: %w", err)
		}
		s.pool.Stop()
	})
	return err
}

// onData is nbio's read callback for every connection.
func (s *Server) onData(c *nbio.Conn, data []byte) {
	s.handoff.Load()
	if p, ok := c.Session().(*nbhttp.Parser); ok {
		if g, ok := p.Processor.(*limitProcessor); ok {
			if g.feed(data) {
				s.parse(g, p, data)
			}
			return
		}
	}
	c.DataHandler()(c, data)
}

// onWritten is nbio's written-bytes callback: it settles the unsent-bytes
// count of WebSocket connections, and closes held pulls' connections
// once their answer is out.
func (s *Server) onWritten(c *nbio.Conn, _ []byte, n int) {
	if cc, ok := c.Session().(*closingConn); ok {
		cc.written(n) // a held pull's last answer
		return
	}
	ws.OnWritten(c, n)
}
