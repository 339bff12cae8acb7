package smtpd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/emersion/go-smtp"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/limits"
	"github.com/mailwire/mailwire/store"
)

// Server is the SMTP listener. Create it with New, then Start; stop it
// with Shutdown.
type Server struct {
	cfg Config
	// domains are the served mail domains (the ingest service's; the
	// default, cfg.Domain, first): RCPT TO may name any of them.
	domains []string
	db      store.Directory
	in      *ingest.Service
	log     *slog.Logger
	m       *smetrics
	smtp    *smtp.Server

	// draining is set (under mu) when Shutdown begins: no new connection,
	// no new transaction.
	draining atomic.Bool

	// gate counts connections against the descriptor budget shared with
	// HTTP (nil without one); the per-address cap stays in mu.perIP.
	gate *limits.Gate

	// wg owns the accept loop and Shutdown's wait for go-smtp.
	wg sync.WaitGroup

	mu struct {
		sync.Mutex
		ln    net.Listener // nil until Start
		conns map[*conn]struct{}
		perIP map[netip.Addr]int
	}

	shutdownOnce sync.Once
	shutdownErr  error
}

// New validates cfg (reporting every problem at once), loads the TLS key
// pair if one is configured, and returns a Server that stores mail through
// in and looks inboxes up in db.
func New(cfg Config, db store.Directory, in *ingest.Service) (*Server, error) {
	if db == nil || in == nil {
		return nil, errors.New("cannot create SMTP server: store and ingest service are required")
	}
	cfg = cfg.withDefaults(in.MailDomain())
	tlsConf, err := cfg.validate(in.MailDomain())
	if err != nil {
		return nil, err
	}
	cfg.Domain = strings.ToLower(cfg.Domain)
	s := &Server{
		cfg:     cfg,
		domains: in.Domains(),
		db:      db,
		in:      in,
		log:     cfg.Logger.With("component", "smtp"),
		m:       newMetrics(cfg.Metrics),
	}
	s.mu.conns = make(map[*conn]struct{})
	s.mu.perIP = make(map[netip.Addr]int)
	if cfg.Descriptors != nil {
		s.gate = limits.NewGate("smtp", cfg.Descriptors, 0) // the per-address cap is mu.perIP's
	}

	srv := smtp.NewServer(backend{s})
	srv.Domain = cfg.Hostname
	srv.MaxMessageBytes = int64(cfg.MaxMessageSize)
	// Recipients are counted in Session.Rcpt (with a metric), not by
	// go-smtp (which would refuse before we see them).
	srv.MaxRecipients = 0
	srv.MaxLineLength = maxLineLength
	srv.ReadTimeout = cfg.CommandTimeout
	srv.WriteTimeout = cfg.CommandTimeout
	srv.EnableSMTPUTF8 = true
	if tlsConf != nil {
		tlsConf.GetConfigForClient = func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			if c, ok := hi.Conn.(*conn); ok {
				c.startTLS()
			}
			return nil, nil // the configuration as it is
		}
	}
	srv.TLSConfig = tlsConf
	srv.ErrorLog = errorLog{s.log}
	s.smtp = srv
	return s, nil
}

// Start listens on Config.Addr and serves connections on a goroutine of
// its own. It returns once the listener is bound.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ln != nil || s.draining.Load() {
		return errors.New("cannot start SMTP server: already started or shut down")
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("cannot listen for SMTP on %s: %w", s.cfg.Addr, err)
	}
	l := &listener{Listener: ln, srv: s}
	s.mu.ln = l
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		// Serve returns nil once go-smtp's Shutdown marked it closed; an
		// error before that is a failing listener.
		if err := s.smtp.Serve(l); err != nil && !s.draining.Load() {
			s.log.Error("SMTP listener failed; no longer accepting", "error", err)
		}
	}()
	s.log.Info("SMTP listening", "addr", ln.Addr().String(), "starttls", s.smtp.TLSConfig != nil)
	return nil
}

// Addr is the bound listen address ("" before Start).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.ln == nil {
		return ""
	}
	return s.mu.ln.Addr().String()
}

// Shutdown stops accepting connections, answers idle connections 421 and
// closes them, lets connections in the middle of a transaction finish it
// (they are closed right after its reply), and returns when every
// connection goroutine has ended. When ctx ends first it closes the
// remaining connections, waits for their goroutines (a DeliverRaw call in
// progress still completes) and returns ctx's error. It is idempotent:
// later calls return the first call's result.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutdownOnce.Do(func() { s.shutdownErr = s.shutdown(ctx) })
	return s.shutdownErr
}

func (s *Server) shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.draining.Store(true)
	ln := s.mu.ln
	conns := s.connsLocked()
	s.mu.Unlock()
	if ln == nil {
		return nil
	}
	// Close the listener ourselves too: go-smtp's Shutdown only closes
	// listeners that Serve has registered, which it may not have yet.
	_ = ln.Close()
	smtpDone := make(chan struct{})
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(smtpDone)
		// Background: this returns when go-smtp's connection goroutines
		// have all ended, which the code below brings about.
		_ = s.smtp.Shutdown(context.Background())
	}()
	for _, c := range conns {
		c.closeIfIdle()
	}
	var err error
	select {
	case <-smtpDone:
	case <-ctx.Done():
		s.mu.Lock()
		conns = s.connsLocked()
		s.mu.Unlock()
		s.log.Warn("SMTP shutdown deadline reached; closing connections", "open", len(conns))
		for _, c := range conns {
			c.forceClose()
		}
		err = fmt.Errorf("cannot finish SMTP sessions: %w", ctx.Err())
		<-smtpDone
	}
	s.wg.Wait()
	s.log.Info("SMTP stopped")
	return err
}

func (s *Server) connsLocked() []*conn {
	out := make([]*conn, 0, len(s.mu.conns))
	for c := range s.mu.conns {
		out = append(out, c)
	}
	return out
}

// admit registers nc within the limits, or returns the reply line and
// rejection reason to close it with.
func (s *Server) admit(nc net.Conn) (c *conn, line, reason string) {
	key := clientKey(nc.RemoteAddr())
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.draining.Load():
		return nil, lineShuttingDown, reasonShuttingDown
	case len(s.mu.conns) >= s.cfg.MaxConns:
		return nil, lineTooManyConns, reasonTooManyConns
	case s.mu.perIP[key] >= s.cfg.MaxConnsPerIP:
		return nil, lineTooManyConnsIP, reasonTooManyConnsIP
	case s.gate != nil:
		if ok, _ := s.gate.Admit(key); !ok {
			return nil, lineTooManyConns, reasonDescriptors
		}
	}
	c = &conn{Conn: nc, srv: s, key: key}
	s.mu.conns[c] = struct{}{}
	s.mu.perIP[key]++
	s.m.open.Add(1)
	s.m.sessions.Inc()
	return c, "", ""
}

// release gives c's slots back (once, from conn.Close).
func (s *Server) release(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.mu.conns[c]; !ok {
		panic("BUG: releasing an unregistered SMTP connection")
	}
	delete(s.mu.conns, c)
	if n := s.mu.perIP[c.key] - 1; n > 0 {
		s.mu.perIP[c.key] = n
	} else {
		delete(s.mu.perIP, c.key)
	}
	if s.gate != nil {
		s.gate.Release(c.key)
	}
	s.m.open.Add(-1)
}

// backend creates go-smtp sessions (at HELO/EHLO, again after STARTTLS).
type backend struct{ s *Server }

func (b backend) NewSession(sc *smtp.Conn) (smtp.Session, error) {
	nc := sc.Conn()
	t, isTLS := nc.(*tls.Conn)
	if isTLS {
		nc = t.NetConn()
	}
	c, ok := nc.(*conn)
	if !ok {
		panic(fmt.Sprintf("BUG: SMTP connection of type %T was not accepted by our listener", nc))
	}
	if isTLS {
		c.setTLS(t)
	}
	return &session{
		srv:    b.s,
		sc:     sc,
		c:      c,
		remote: c.RemoteAddr().String(),
		helo:   sc.Hostname(),
		tls:    isTLS,
	}, nil
}

// errorLog routes go-smtp's log lines to slog: panics it recovered are
// errors, everything else (a client that reset, a failed TLS handshake) is
// a client's problem and logged at debug level.
type errorLog struct{ log *slog.Logger }

func (l errorLog) Printf(format string, v ...any) { l.print(fmt.Sprintf(format, v...)) }
func (l errorLog) Println(v ...any)               { l.print(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }

func (l errorLog) print(msg string) {
	switch {
	case strings.HasPrefix(msg, "panic"):
		l.log.Error("go-smtp recovered a panic", "detail", msg)
	case strings.HasPrefix(msg, "accept error"):
		l.log.Warn("go-smtp", "detail", msg)
	default:
		l.log.Debug("go-smtp", "detail", msg)
	}
}
