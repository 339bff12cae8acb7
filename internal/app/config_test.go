package app

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/engine/ws"
	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/confcheck"
	"github.com/mailwire/mailwire/smtpd"
)

func TestDefaultConfigValidates(t *testing.T) {
	c := DefaultConfig()
	if err := c.Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	// Composed of the components' defaults.
	if c.WS != ws.DefaultConfig() || c.Ingest.MaxMessageSize != ingest.DefaultMaxMessageSize ||
		c.Delivery.AckTimeout != delivery.DefaultConfig().AckTimeout || c.SMTP.Addr != smtpd.DefaultConfig().Addr {
		t.Errorf("DefaultConfig does not compose the components' defaults: %+v", c)
	}
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	exists := filepath.Join(dir, "creds")
	if err := os.WriteFile(exists, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		flag string
		mod  func(*Config)
	}{
		// The node's own settings.
		{"--http-addr", func(c *Config) { c.HTTPAddr = "nonsense" }},
		{"--data-dir", func(c *Config) { c.DataDir = "" }},
		{"--max-event-bytes", func(c *Config) { c.MaxEventBytes = 16<<10 - 1 }},
		{"--max-event-bytes", func(c *Config) { c.MaxEventBytes = 64<<20 + 1 }},
		{"--ingest-memory", func(c *Config) { c.IngestMemory = c.Ingest.MaxMessageSize }},
		{"--http-max-conns-per-ip", func(c *Config) { c.HTTPMaxConnsPerIP = -1 }},
		{"--public-url", func(c *Config) { c.PublicURL = "mail.example.com" }},
		{"--public-url", func(c *Config) { c.PublicURL = "https://mail.example.com/?q=1" }},
		{"--nats-url", func(c *Config) { c.NATS.URL = "nats://a:4222,http://b" }},
		{"--nats-replicas", func(c *Config) { c.NATS.Replicas = 6 }},
		{"--nats-creds", func(c *Config) { c.NATS.CredsFile = filepath.Join(dir, "missing") }},
		{"--nats-tls-ca", func(c *Config) { c.NATS.TLSCA = filepath.Join(dir, "missing") }},
		// One of each component's, reported through Config.Validate.
		{"--smtp-addr", func(c *Config) { c.SMTP.Addr = "nonsense" }},
		{"--mail-domain", func(c *Config) { c.Ingest.MailDomain = "a@b" }},
		{"--ws-ping-interval", func(c *Config) { c.WS.PingInterval = time.Millisecond }},
		{"--retry-schedule", func(c *Config) { c.Delivery.Schedule = nil }},
		{"--webhook-timeout", func(c *Config) { c.Delivery.Webhook.Timeout = 0 }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		p := confcheck.List(c.Validate())
		if len(p) != 1 || !strings.HasPrefix(p[0], tc.flag+" ") {
			t.Errorf("%s: Validate reported %q, want one problem naming the flag", tc.flag, p)
		}
	}
	// Valid: SMTP disabled, no HTTP cap, a cluster with existing files.
	c := DefaultConfig()
	c.SMTP.Addr, c.HTTPMaxConnsPerIP, c.PublicURL = "", 0, "https://mail.example.com/"
	c.NATS = NATSConfig{URL: "nats://a:4222, tls://b:4222", Replicas: 1, CredsFile: exists, TLSCA: exists}
	c.IngestMemory = 4 * c.Ingest.MaxMessageSize
	if err := c.Validate(); err != nil {
		t.Errorf("valid settings rejected: %v", err)
	}
	// Every problem at once, of the node and of its components.
	c = DefaultConfig()
	c.HTTPAddr, c.NATS.Replicas, c.SMTP.MaxConnsPerIP, c.Ingest.Limits.MaxParts, c.WS.RateFrames, c.Delivery.WebhookWorkers = "x", 0, 0, 0, 0, 0
	if p := confcheck.List(c.Validate()); len(p) != 6 {
		t.Errorf("Validate reported %d problems, want 6: %q", len(p), p)
	}
}
