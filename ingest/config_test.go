package ingest_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/confcheck/conftest"
)

func TestConfigValidate(t *testing.T) {
	if got := ingest.DefaultConfig().MaxMessageSize; got != 25<<20 {
		t.Errorf("default --max-message-size %d, want 25MiB (CONFIG.md)", got)
	}
	conftest.Check(t, ingest.DefaultConfig,
		conftest.Case("--mail-domain", func(c *ingest.Config) { c.MailDomain = "" }),
		conftest.Case("--mail-domain", func(c *ingest.Config) { c.MailDomain = "a@b" }),
		conftest.Case("--mail-domain", func(c *ingest.Config) { c.OtherDomains = []string{"ok.test", "not a domain"} }),
		conftest.Case("--mail-domain", func(c *ingest.Config) { c.OtherDomains = []string{"a/b"} }),
		conftest.Case("--max-message-size", func(c *ingest.Config) { c.MaxMessageSize = 1<<10 - 1 }),
		conftest.Case("--max-message-size", func(c *ingest.Config) { c.MaxMessageSize = 1<<30 + 1 }),
		conftest.Case("--max-mime-parts", func(c *ingest.Config) { c.Limits.MaxParts = 0 }),
		conftest.Case("--max-mime-parts", func(c *ingest.Config) { c.Limits.MaxParts = 100001 }),
	)
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
