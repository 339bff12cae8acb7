package ingest_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/ingest"
)

func TestConfigValidate(t *testing.T) {
	if err := ingest.DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	if got := ingest.DefaultConfig().MaxMessageSize; got != 25<<20 {
		t.Errorf("default --max-message-size %d, want 25MiB (CONFIG.md)", got)
	}
	for _, tc := range []struct {
		flag string
		mod  func(*ingest.Config)
	}{
		{"--mail-domain", func(c *ingest.Config) { c.MailDomain = "" }},
		{"--mail-domain", func(c *ingest.Config) { c.MailDomain = "a@b" }},
		{"--mail-domain", func(c *ingest.Config) { c.OtherDomains = []string{"ok.test", "not a domain"} }},
		{"--mail-domain", func(c *ingest.Config) { c.OtherDomains = []string{"a/b"} }},
		{"--max-message-size", func(c *ingest.Config) { c.MaxMessageSize = 1<<10 - 1 }},
		{"--max-message-size", func(c *ingest.Config) { c.MaxMessageSize = 1<<30 + 1 }},
		{"--max-mime-parts", func(c *ingest.Config) { c.Limits.MaxParts = 0 }},
		{"--max-mime-parts", func(c *ingest.Config) { c.Limits.MaxParts = 100001 }},
	} {
		c := ingest.DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Validate = %v, want one problem naming the flag", tc.flag, err)
		}
	}
	c := ingest.Config{MailDomain: "a.test", OtherDomains: []string{"b.test"}, MaxMessageSize: 1 << 10}
	c.Limits.MaxParts = 100000
	if err := c.Validate(); err != nil {
		t.Errorf("bounds rejected: %v", err)
	}
	if got := c.Domains(); !reflect.DeepEqual(got, []string{"a.test", "b.test"}) {
		t.Errorf("Domains() = %q", got)
	}
	if err := (ingest.Config{}).Validate(); err == nil || strings.Count(err.Error(), "\n") != 2 {
		t.Errorf("the zero Config: %v, want 3 problems", err)
	}
}
