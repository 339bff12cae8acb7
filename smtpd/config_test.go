package smtpd

import (
	"testing"

	"github.com/mailwire/mailwire/internal/confcheck/conftest"
)

func TestConfigValidate(t *testing.T) {
	conftest.Check(t, DefaultConfig,
		conftest.Case("--smtp-addr", func(c *Config) { c.Addr = "nonsense" }),
		conftest.Case("--smtp-tls-cert and --smtp-tls-key", func(c *Config) { c.TLSCertFile = "cert.pem" }),
		conftest.Case("--smtp-tls-cert and --smtp-tls-key", func(c *Config) { c.TLSKeyFile = "key.pem" }),
		conftest.Case("--smtp-max-conns-per-ip", func(c *Config) { c.MaxConnsPerIP = 0 }),
	)
	// Empty disables SMTP; both TLS files together; one session per IP.
	c := Config{TLSCertFile: "cert.pem", TLSKeyFile: "key.pem", MaxConnsPerIP: 1}
	if err := c.Validate(); err != nil {
		t.Errorf("valid settings rejected: %v", err)
	}
	// The defaults are withDefaults' (DefaultConfig adds only Addr).
	d := DefaultConfig()
	w := Config{Addr: d.Addr}.withDefaults("mail.test")
	if w.MaxRecipients != d.MaxRecipients || w.MaxConnsPerIP != d.MaxConnsPerIP || w.MaxConns != d.MaxConns ||
		w.CommandTimeout != d.CommandTimeout || w.DataTimeout != d.DataTimeout || w.MaxMessageSize != DefaultMaxMessageSize {
		t.Errorf("DefaultConfig %+v differs from withDefaults %+v", d, w)
	}
}
