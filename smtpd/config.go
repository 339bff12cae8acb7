package smtpd

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/confcheck"
	"github.com/mailwire/mailwire/internal/limits"
)

// Config configures a Server. A zero field takes the default its comment
// names; negative numbers and durations are invalid. DefaultConfig is a
// node's defaults (with Addr, which New requires); the fields a flag sets
// name it (CONFIG.md), as Validate's messages do.
type Config struct {
	// Addr is the listen address, e.g. "127.0.0.1:2525"; port 0 picks a
	// free port (see Server.Addr). Required by New; for a node, empty
	// disables SMTP (--smtp-addr).
	Addr string
	// Domain is the default mail domain of inbox addresses
	// (<mailboxName>@Domain). Default: the ingest service's MailDomain;
	// when set it must equal it. RCPT TO is accepted for every domain the
	// ingest service serves (Service.Domains).
	Domain string
	// Hostname is the name in the greeting. Default Domain.
	Hostname string
	// MaxMessageSize is the largest message accepted, in bytes. Default
	// DefaultMaxMessageSize (ingest's; a node sets the ingest service's
	// --max-message-size here).
	MaxMessageSize int
	// MaxRecipients is the most recipients accepted in one transaction;
	// more get 452 4.5.3. Default DefaultMaxRecipients (50).
	MaxRecipients int
	// MaxConnsPerIP is the most open connections from one client IP (one
	// /64 for IPv6); more are answered 421 4.7.0 and closed
	// (--smtp-max-conns-per-ip). Default DefaultMaxConnsPerIP (100).
	MaxConnsPerIP int
	// MaxConns is the most open connections in all; more are answered
	// 421 4.3.2 and closed. Default DefaultMaxConns (1000).
	MaxConns int
	// CommandTimeout bounds the read of each command, the write of each
	// reply and, during DATA, each pause between reads.
	// Default DefaultCommandTimeout (60s).
	CommandTimeout time.Duration
	// DataTimeout bounds a whole DATA or BDAT phase. Default
	// DefaultDataTimeout (5m).
	DataTimeout time.Duration
	// TLSCertFile and TLSKeyFile are PEM files; both or neither. Set, they
	// enable STARTTLS (--smtp-tls-cert, --smtp-tls-key). Default: no
	// STARTTLS.
	TLSCertFile, TLSKeyFile string
	// Memory is the message memory budget shared with HTTP; nil means
	// none (tests). A transaction holds its share from MAIL FROM's SIZE=
	// (or as DATA arrives) until its reply.
	Memory *limits.Memory
	// Disk refuses mail (452 4.3.1) while free disk is low; nil: never.
	Disk *limits.Disk
	// Descriptors is the process's client socket budget shared with
	// HTTP; nil means none (tests).
	Descriptors *limits.Descriptors
	// Metrics is the set the server registers its metrics in (names in
	// metrics.go). Default: a new, unexported set.
	Metrics *metrics.Set
	// Logger receives the server's logs; message bodies are never logged.
	// Default slog.Default().
	Logger *slog.Logger
}

// DefaultConfig is a node's SMTP defaults: CONFIG.md's --smtp-addr and
// the limits.go constants. Domain and MaxMessageSize are left for the
// node to set from the ingest service's configuration.
func DefaultConfig() Config {
	return Config{
		Addr:           "127.0.0.1:2525",
		MaxRecipients:  DefaultMaxRecipients,
		MaxConnsPerIP:  DefaultMaxConnsPerIP,
		MaxConns:       DefaultMaxConns,
		CommandTimeout: DefaultCommandTimeout,
		DataTimeout:    DefaultDataTimeout,
	}
}

// Validate reports every problem of the settings flags set at once, each
// by its flag. An empty Addr is valid here (SMTP disabled); New, which
// needs an address, checks the whole Config again.
func (c Config) Validate() error {
	var p confcheck.Problems
	if c.Addr != "" {
		_, _, err := net.SplitHostPort(c.Addr)
		p.Check(err == nil, "--smtp-addr %q is not host:port", c.Addr)
	}
	p.Check((c.TLSCertFile == "") == (c.TLSKeyFile == ""), "--smtp-tls-cert and --smtp-tls-key go together")
	p.Check(c.MaxConnsPerIP >= 1, "--smtp-max-conns-per-ip must be at least 1")
	return p.Err()
}

// withDefaults returns c with every zero field set to its default.
// mailDomain is the ingest service's domain.
func (c Config) withDefaults(mailDomain string) Config {
	if c.Domain == "" {
		c.Domain = mailDomain
	}
	if c.Hostname == "" {
		c.Hostname = c.Domain
	}
	if c.MaxMessageSize == 0 {
		c.MaxMessageSize = DefaultMaxMessageSize
	}
	if c.MaxRecipients == 0 {
		c.MaxRecipients = DefaultMaxRecipients
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = DefaultMaxConnsPerIP
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.CommandTimeout == 0 {
		c.CommandTimeout = DefaultCommandTimeout
	}
	if c.DataTimeout == 0 {
		c.DataTimeout = DefaultDataTimeout
	}
	if c.Metrics == nil {
		c.Metrics = metrics.NewSet()
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// validate reports every problem of a defaulted c at once, and loads the
// TLS key pair when one is configured.
func (c *Config) validate(mailDomain string) (*tls.Config, error) {
	var probs []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			probs = append(probs, fmt.Sprintf(format, args...))
		}
	}
	if c.Addr == "" {
		probs = append(probs, "Addr is required")
	} else {
		_, _, err := net.SplitHostPort(c.Addr)
		check(err == nil, "Addr %q is not host:port", c.Addr)
	}
	check(validDomain(c.Domain), "Domain %q is not a domain name", c.Domain)
	check(strings.EqualFold(c.Domain, mailDomain), "Domain %q differs from the ingest service's mail domain %q", c.Domain, mailDomain)
	check(validDomain(c.Hostname), "Hostname %q is not a host name", c.Hostname)
	// go-smtp parses MAIL FROM SIZE= as a uint32.
	check(c.MaxMessageSize > 0 && c.MaxMessageSize <= 1<<30, "MaxMessageSize %d must be between 1 byte and 1GiB", c.MaxMessageSize)
	check(c.MaxRecipients > 0, "MaxRecipients %d must be positive", c.MaxRecipients)
	check(c.MaxConnsPerIP > 0, "MaxConnsPerIP %d must be positive", c.MaxConnsPerIP)
	check(c.MaxConns > 0, "MaxConns %d must be positive", c.MaxConns)
	check(c.CommandTimeout > 0, "CommandTimeout %s must be positive", c.CommandTimeout)
	check(c.DataTimeout > 0, "DataTimeout %s must be positive", c.DataTimeout)
	var tlsConf *tls.Config
	switch {
	case (c.TLSCertFile == "") != (c.TLSKeyFile == ""):
		probs = append(probs, "TLSCertFile and TLSKeyFile go together")
	case c.TLSCertFile != "":
		cert, err := tls.LoadX509KeyPair(c.TLSCertFile, c.TLSKeyFile)
		if err != nil {
			probs = append(probs, fmt.Sprintf("cannot load TLS key pair: %v", err))
			break
		}
		tlsConf = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	}
	if len(probs) > 0 {
		return nil, errors.New("invalid SMTP configuration: " + strings.Join(probs, "; "))
	}
	return tlsConf, nil
}

// validDomain accepts what the greeting and addresses can carry: a
// non-empty name without spaces, '@' or brackets.
func validDomain(d string) bool {
	return d != "" && len(d) <= 253 && !strings.ContainsAny(d, "@<>[] \t\r\n")
}
