package ws

import (
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/confcheck/conftest"
)

func TestConfigValidate(t *testing.T) {
	conftest.Check(t, DefaultConfig,
		conftest.Case("--ws-ping-interval", func(c *Config) { c.PingInterval = time.Millisecond }),
		conftest.Case("--ws-pong-timeout", func(c *Config) { c.PongTimeout = 0 }),
		conftest.Case("--ws-max-conns-per-account", func(c *Config) { c.MaxConnsPerAccount = 0 }),
		conftest.Case("--ws-rate-frames", func(c *Config) { c.RateFrames = 0 }),
		conftest.Case("--ws-rate-window", func(c *Config) { c.RateWindow = 0 }),
		conftest.Case("--ws-max-frame", func(c *Config) { c.MaxFrame = 255 }),
		conftest.Case("--ws-max-frame", func(c *Config) { c.MaxFrame = 16<<20 + 1 }),
		conftest.Case("--ws-max-pending", func(c *Config) { c.MaxPending = 4<<10 - 1 }),
		conftest.Case("--replay-limit", func(c *Config) { c.ReplayLimit = 0 }),
		conftest.Case("--replay-limit", func(c *Config) { c.ReplayLimit = 10001 }),
	)
	// At the bounds: valid.
	c := Config{PingInterval: 10 * time.Millisecond, PongTimeout: 10 * time.Millisecond, MaxConnsPerAccount: 1, RateFrames: 1,
		RateWindow: time.Nanosecond, MaxFrame: 256, MaxPending: 4 << 10, ReplayLimit: 10000}
	if err := c.Validate(); err != nil {
		t.Errorf("bounds rejected: %v", err)
	}
	// Every problem at once.
	if err := (Config{}).Validate(); err == nil || strings.Count(err.Error(), "\n") != 7 {
		t.Errorf("the zero Config: %v, want 8 problems", err)
	}
	// A zero field takes its default.
	var z Config
	z.setDefaults()
	z.Metrics, z.Logger = nil, nil
	if z != DefaultConfig() {
		t.Errorf("setDefaults gave %+v, want DefaultConfig %+v", z, DefaultConfig())
	}
}
