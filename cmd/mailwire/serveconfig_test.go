package main

import (
	"flag"
	"reflect"
	"testing"
)

// Every flag's default is its field's in defaultServeConfig (app.Config's
// from app.DefaultConfig, composed of the components' DefaultConfig): no
// flag carries a default of its own.
func TestServeFlagDefaults(t *testing.T) {
	clearEnv(t)
	var c serveConfig
	fs := serveFlags(&c)
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
	if want := defaultServeConfig(); !reflect.DeepEqual(c, want) {
		t.Fatalf("the flags' defaults differ from defaultServeConfig:\n got %+v\nwant %+v", c, want)
	}
	// Each flag shows the value its field holds by default...
	fs.VisitAll(func(f *flag.Flag) {
		if got := f.Value.String(); got != f.DefValue {
			t.Errorf("--%s shows default %q, its field holds %q", f.Name, f.DefValue, got)
		}
	})
	// ... which is CONFIG.md's (as `serve --help` prints it).
	want := map[string]string{
		"http-addr": "127.0.0.1:8080", "smtp-addr": "127.0.0.1:2525", "smtp-tls-cert": "", "smtp-tls-key": "",
		"data-dir": "./data", "mail-domain": "localhost", "admin-token": "", "admin-token-file": "", "dev": "false",
		"ws-ping-interval": "30s", "ws-pong-timeout": "10s", "ws-max-conns-per-account": "10", "ws-rate-frames": "30",
		"ws-rate-window": "10s", "ws-max-frame": "64KiB", "ws-max-pending": "1MiB", "ws-ack-timeout": "30s",
		"max-event-bytes": "256KiB", "replay-limit": "100", "retry-schedule": "0s,30s,1m,2m,4m", "webhook-timeout": "15s",
		"webhook-workers": "64", "webhook-allow-private": "false", "retention": "168h0m0s", "failed-retention": "720h0m0s",
		"max-message-size": "25MiB", "max-mime-parts": "1000", "ingest-memory": "0", "min-free-disk": "1GiB,5%",
		"http-max-conns-per-ip": "256", "smtp-max-conns-per-ip": "100", "nats-url": "", "node-name": "", "nats-replicas": "3",
		"nats-creds": "", "nats-tls-ca": "", "log-level": "info", "log-format": "text", "public-url": "", "access-log": "false",
		"shutdown-timeout": "30s",
	}
	n := 0
	fs.VisitAll(func(f *flag.Flag) {
		n++
		if d, ok := want[f.Name]; !ok {
			t.Errorf("--%s is not in the table of CONFIG.md's flags", f.Name)
		} else if f.DefValue != d {
			t.Errorf("--%s default %q, want %q", f.Name, f.DefValue, d)
		}
	})
	if n != len(want) {
		t.Errorf("%d flags, the table has %d", n, len(want))
	}
}

// Every flag is bound to a field of serveConfig: setting it changes the
// configuration (a flag bound to a variable of its own would not).
func TestServeFlagsBound(t *testing.T) {
	var probe serveConfig
	serveFlags(&probe).VisitAll(func(f *flag.Flag) {
		var c serveConfig
		fs := serveFlags(&c)
		changed := false
		for _, v := range []string{"true", "7", "1234ms", "other.test"} {
			c = defaultServeConfig()
			if fs.Set(f.Name, v) == nil && !reflect.DeepEqual(c, defaultServeConfig()) {
				changed = true
				break
			}
		}
		if !changed {
			t.Errorf("setting --%s does not change serveConfig", f.Name)
		}
	})
}
