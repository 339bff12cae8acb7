package ws

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	if err := DefaultConfig().Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	for _, tc := range []struct {
		flag string
		mod  func(*Config)
	}{
		{"--ws-ping-interval", func(c *Config) { c.PingInterval = time.Millisecond }},
		{"--ws-pong-timeout", func(c *Config) { c.PongTimeout = 0 }},
		{"--ws-max-conns-per-account", func(c *Config) { c.MaxConnsPerAccount = 0 }},
		{"--ws-rate-frames", func(c *Config) { c.RateFrames = 0 }},
		{"--ws-rate-window", func(c *Config) { c.RateWindow = 0 }},
		{"--ws-max-frame", func(c *Config) { c.MaxFrame = 255 }},
		{"--ws-max-frame", func(c *Config) { c.MaxFrame = 16<<20 + 1 }},
		{"--ws-max-pending", func(c *Config) { c.MaxPending = 4<<10 - 1 }},
		{"--replay-limit", func(c *Config) { c.ReplayLimit = 0 }},
		{"--replay-limit", func(c *Config) { c.ReplayLimit = 10001 }},
	} {
		c := DefaultConfig()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Validate = %v, want one problem naming the flag", tc.flag, err)
		}
	}
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
