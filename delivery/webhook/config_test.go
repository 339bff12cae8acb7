package webhook

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
		timeout time.Duration
		ok      bool
	}{{100 * time.Millisecond, true}, {99 * time.Millisecond, false}, {0, false}, {time.Hour, true}} {
		c := DefaultConfig()
		c.Timeout = tc.timeout
		err := c.Validate()
		if tc.ok != (err == nil) || (err != nil && !strings.HasPrefix(err.Error(), "--webhook-timeout ")) {
			t.Errorf("Timeout %s: Validate = %v", tc.timeout, err)
		}
	}
	d := DefaultConfig()
	if w := d.withDefaults(); w.Timeout != d.Timeout || w.MaxConnsPerHost != d.MaxConnsPerHost || w.MaxResponseBody != d.MaxResponseBody ||
		w.IdleConnTimeout != d.IdleConnTimeout || w.MaxConnWait != d.Timeout || w.UserAgent != DefaultUserAgent {
		t.Errorf("withDefaults changed DefaultConfig: %+v", w)
	}
	if z := (Config{}).withDefaults(); z.Timeout != d.Timeout || z.MaxConnsPerHost != d.MaxConnsPerHost {
		t.Errorf("the zero Config does not take the defaults: %+v", z)
	}
}
