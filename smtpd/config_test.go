package smtpd

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	for _, tc := range []struct {
		flag string
		mod  func(*Config)
	}{
		{"--smtp-addr", func(c *Config) { c.Addr = "nonsense" }},
		{"--smtp-tls-cert and --smtp-tls-key", func(c *Config) { c.TLSCertFile = "cert.pem" }},
		{"--smtp-tls-cert and --smtp-tls-key", func(c *Config) { c.TLSKeyFile = "key.pem" }},
		{"--smtp-max-conns-per-ip", func(c *Config) { c.MaxConnsPerIP = 0 }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Validate = %v, want one problem naming the flag", tc.flag, err)
		}
	}
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
