package delivery

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/confcheck/conftest"
)

func TestConfigValidate(t *testing.T) {
	conftest.Check(t, DefaultConfig,
		conftest.Case("--retry-schedule", func(c *Config) { c.Schedule = nil }),
		conftest.Case("--retry-schedule", func(c *Config) { c.Schedule = make([]time.Duration, 101) }),
		conftest.Case("--ws-ack-timeout", func(c *Config) { c.AckTimeout = -time.Second }),
		conftest.Case("--webhook-timeout", func(c *Config) { c.Webhook.Timeout = time.Millisecond }),
		conftest.Case("--webhook-workers", func(c *Config) { c.WebhookWorkers = 0 }),
		conftest.Case("--webhook-workers", func(c *Config) { c.WebhookWorkers = 10001 }),
		conftest.Case("--retention", func(c *Config) { c.Retention = 0 }),
		conftest.Case("--failed-retention", func(c *Config) { c.FailedRetention = -time.Hour }),
	)
	// At the bounds: valid; an ack timeout of 0 turns the extension off.
	c := DefaultConfig()
	c.Schedule, c.AckTimeout, c.WebhookWorkers = make([]time.Duration, 100), 0, 10000
	c.Webhook.Timeout = 100 * time.Millisecond
	if err := c.Validate(); err != nil {
		t.Errorf("bounds rejected: %v", err)
	}
	// Every problem at once.
	if err := (Config{}).Validate(); err == nil || strings.Count(err.Error(), "\n") != 4 {
		t.Errorf("the zero Config: %v, want 5 problems", err)
	}
}

// A zero field takes DefaultConfig's value, except AckTimeout (0: off).
func TestConfigDefaults(t *testing.T) {
	var z Config
	z.setDefaults()
	d := DefaultConfig()
	if !reflect.DeepEqual(z.Schedule, d.Schedule) || z.Workers != d.Workers || z.QueueSize != d.QueueSize ||
		z.WebhookWorkers != d.WebhookWorkers || z.WebhookQueue != d.WebhookQueue || z.WebhookPerHost != d.WebhookWorkers/2 ||
		z.Retention != d.Retention || z.FailedRetention != d.FailedRetention || z.AckTimeout != 0 {
		t.Errorf("setDefaults gave %+v", z)
	}
	// DefaultConfig hands out its own schedule.
	d.Schedule[0] = time.Hour
	if DefaultSchedule[0] != 0 || DefaultConfig().Schedule[0] != 0 {
		t.Error("changing DefaultConfig().Schedule changed the default")
	}
}
