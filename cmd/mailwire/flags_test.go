package main

import (
	"flag"
	"io"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	f := func(in string, want int) {
		t.Helper()
		got, err := parseSize(in)
		if err != nil {
			t.Fatalf("parseSize(%q): %v", in, err)
		}
		if got != want {
			t.Fatalf("parseSize(%q) = %d, want %d", in, got, want)
		}
	}
	f("64KiB", 64<<10)
	f("1MiB", 1<<20)
	f("25MiB", 25<<20)
	f("1GiB", 1<<30)
	f("0", 0)
	f("1", 1)
	f("12345", 12345)
	f("100B", 100)
	f("64KB", 64<<10) // KB/MB/GB are the same binary units
	f("2MB", 2<<20)
	f("3K", 3<<10)
	f("4M", 4<<20)
	f(" 64KiB ", 64<<10)
	f("64 KiB", 64<<10)
	f("1024GiB", 1<<40)

	bad := func(in string) {
		t.Helper()
		if n, err := parseSize(in); err == nil {
			t.Fatalf("parseSize(%q) = %d, want an error", in, n)
		}
	}
	bad("")
	bad("KiB")
	bad("-1")
	bad("-1KiB")
	bad("1.5MiB")
	bad("1e6")
	bad("0x10")
	bad("64kib")
	bad("1TiB")
	bad("ten")
	bad("1025GiB")
	bad("99999999999999999999")
	bad("1 2")
}

func TestFormatSize(t *testing.T) {
	f := func(n int, want string) {
		t.Helper()
		if got := formatSize(n); got != want {
			t.Fatalf("formatSize(%d) = %q, want %q", n, got, want)
		}
		back, err := parseSize(want)
		if err != nil || back != n {
			t.Fatalf("parseSize(formatSize(%d)) = %d, %v", n, back, err)
		}
	}
	f(0, "0")
	f(100, "100")
	f(1<<10, "1KiB")
	f(64<<10, "64KiB")
	f(1536, "1536")
	f(1<<20, "1MiB")
	f(25<<20, "25MiB")
	f(3<<19, "1536KiB")
	f(1<<30, "1GiB")
	f(3<<29, "1536MiB")
}

func TestRetrySchedule(t *testing.T) {
	f := func(in string, want ...time.Duration) {
		t.Helper()
		var d []time.Duration
		if err := (scheduleValue{&d}).Set(in); err != nil {
			t.Fatalf("Set(%q): %v", in, err)
		}
		if !reflect.DeepEqual(d, want) {
			t.Fatalf("Set(%q) = %v, want %v", in, d, want)
		}
	}
	f("0s,30s,60s,2m,4m", 0, 30*time.Second, time.Minute, 2*time.Minute, 4*time.Minute)
	f("0s,50ms", 0, 50*time.Millisecond)
	f("1s", time.Second)
	f(" 0s , 1m30s ", 0, 90*time.Second)
	f("0", 0)

	bad := func(in, wantMsg string) {
		t.Helper()
		d := []time.Duration{time.Hour}
		err := (scheduleValue{&d}).Set(in)
		if err == nil {
			t.Fatalf("Set(%q) accepted: %v", in, d)
		}
		if !strings.Contains(err.Error(), wantMsg) {
			t.Fatalf("Set(%q): error %q does not contain %q", in, err, wantMsg)
		}
		if !reflect.DeepEqual(d, []time.Duration{time.Hour}) {
			t.Fatalf("Set(%q) changed the value on error: %v", in, d)
		}
	}
	bad("", "not a duration")
	bad("30", "not a duration")
	bad("0s,,1s", "not a duration")
	bad("0s,1s,", "not a duration")
	bad("1s,-1s", "negative")
	bad("soon", "not a duration")

	// String shows the value the way it is written.
	d := []time.Duration{0, 30 * time.Second, time.Minute, 90 * time.Second, 50 * time.Millisecond}
	if got := (scheduleValue{&d}).String(); got != "0s,30s,1m,1m30s,50ms" {
		t.Fatalf("String() = %q", got)
	}
	// Through a flag set: the default and a given value.
	var c serveConfig
	fs := serveFlags(&c)
	if got := fs.Lookup("retry-schedule").DefValue; got != "0s,30s,1m,2m,4m" {
		t.Errorf("--retry-schedule default shows as %q", got)
	}
	if err := fs.Parse([]string{"--retry-schedule", "0s,50ms"}); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Delivery.Schedule, []time.Duration{0, 50 * time.Millisecond}) {
		t.Fatalf("--retry-schedule 0s,50ms gave %v", c.Delivery.Schedule)
	}
}

func TestEnvName(t *testing.T) {
	f := func(flagName, want string) {
		t.Helper()
		if got := envName(flagName); got != want {
			t.Fatalf("envName(%q) = %q, want %q", flagName, got, want)
		}
	}
	f("http-addr", "MAILWIRE_HTTP_ADDR")
	f("ws-max-conns-per-account", "MAILWIRE_WS_MAX_CONNS_PER_ACCOUNT")
	f("dev", "MAILWIRE_DEV")
	f("admin-token", "MAILWIRE_ADMIN_TOKEN")
}

// parseServe parses args like `mailwire serve` does (flags, then env).
func parseServe(t *testing.T, args ...string) (serveConfig, error) {
	t.Helper()
	var c serveConfig
	fs := serveFlags(&c)
	fs.SetOutput(io.Discard)
	if err := fs.Parse(args); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	return c, applyEnv(fs)
}

// clearEnv unsets every MAILWIRE_ variable the commands read, for the
// test's duration.
func clearEnv(t *testing.T) {
	var c serveConfig
	serveFlags(&c).VisitAll(func(f *flag.Flag) { unsetenv(t, envName(f.Name)) })
	unsetenv(t, "MAILWIRE_SERVER")
	unsetenv(t, "MAILWIRE_TOKEN")
}

// unsetenv unsets name until the test ends (t.Setenv registers the
// restore).
func unsetenv(t *testing.T, name string) {
	t.Setenv(name, "")
	if err := os.Unsetenv(name); err != nil {
		t.Fatal(err)
	}
}

func TestServeEnvPrecedence(t *testing.T) {
	clearEnv(t)
	t.Setenv("MAILWIRE_HTTP_ADDR", "10.0.0.1:9000")
	t.Setenv("MAILWIRE_MAIL_DOMAIN", "env.example")
	t.Setenv("MAILWIRE_MAX_MESSAGE_SIZE", "1MiB")
	t.Setenv("MAILWIRE_RETRY_SCHEDULE", "0s,1s")
	t.Setenv("MAILWIRE_DEV", "true")
	t.Setenv("MAILWIRE_WEBHOOK_ALLOW_PRIVATE", "1")
	t.Setenv("MAILWIRE_WS_PING_INTERVAL", "5s")
	t.Setenv("MAILWIRE_SMTP_ADDR", "") // set but empty: disables SMTP
	t.Setenv("MAILWIRE_ADMIN_TOKEN", "from-env")

	c, err := parseServe(t, "--http-addr", "127.0.0.1:0", "--max-message-size", "2MiB", "--ws-ping-interval=7s")
	if err != nil {
		t.Fatal(err)
	}
	// The flag wins over the variable.
	if c.HTTPAddr != "127.0.0.1:0" || c.Ingest.MaxMessageSize != 2<<20 || c.WS.PingInterval != 7*time.Second {
		t.Errorf("flags did not win: addr %q size %d ping %s", c.HTTPAddr, c.Ingest.MaxMessageSize, c.WS.PingInterval)
	}
	// Variables fill the rest.
	if !reflect.DeepEqual(c.Ingest.Domains(), []string{"env.example"}) || !c.Dev || !c.Delivery.Webhook.AllowPrivate || c.SMTP.Addr != "" || c.AdminToken != "from-env" ||
		!reflect.DeepEqual(c.Delivery.Schedule, []time.Duration{0, time.Second}) {
		t.Errorf("env not applied: %+v", c)
	}
	// Untouched flags keep their defaults.
	if c.DataDir != "./data" || c.WS.ReplayLimit != 100 || c.WS.MaxFrame != 64<<10 || c.LogLevel != "info" {
		t.Errorf("defaults changed: %+v", c)
	}
	// A flag given with its default value still wins.
	c, err = parseServe(t, "--mail-domain", "localhost")
	if err != nil || !reflect.DeepEqual(c.Ingest.Domains(), []string{"localhost"}) {
		t.Errorf("--mail-domain localhost lost to the variable: %q %v", c.Ingest.Domains(), err)
	}
}

// --mail-domain may be repeated and may list several domains; the first
// is the default; the environment variable takes a list too.
func TestServeMailDomains(t *testing.T) {
	clearEnv(t)
	f := func(want []string, args ...string) {
		t.Helper()
		c, err := parseServe(t, args...)
		if err != nil {
			t.Fatalf("%q: %v", args, err)
		}
		if !reflect.DeepEqual(c.Ingest.Domains(), want) {
			t.Errorf("%q: domains %q, want %q", args, c.Ingest.Domains(), want)
		}
	}
	f([]string{"localhost"})
	f([]string{"a.test"}, "--mail-domain", "a.test")
	f([]string{"a.test", "b.test", "c.test"}, "--mail-domain", "a.test,b.test", "--mail-domain", "c.test")
	f([]string{"a.test", "b.test"}, "--mail-domain= a.test , b.test ")
	t.Setenv("MAILWIRE_MAIL_DOMAIN", "x.test,y.test")
	f([]string{"x.test", "y.test"})
	f([]string{"z.test"}, "--mail-domain", "z.test")
	for _, bad := range []string{"a.test,b@c", ","} {
		c, err := parseServe(t, "--mail-domain", bad)
		if err == nil {
			err = c.validate()
		}
		if err == nil || !strings.Contains(err.Error(), "--mail-domain") {
			t.Errorf("--mail-domain %q: %v", bad, err)
		}
	}
}

func TestServeEnvInvalid(t *testing.T) {
	clearEnv(t)
	t.Setenv("MAILWIRE_WS_RATE_FRAMES", "many")
	t.Setenv("MAILWIRE_MAX_MESSAGE_SIZE", "huge")
	t.Setenv("MAILWIRE_DEV", "yes please")
	t.Setenv("MAILWIRE_RETRY_SCHEDULE", "0s,soon")
	_, err := parseServe(t)
	if err == nil {
		t.Fatal("invalid variables accepted")
	}
	for _, want := range []string{"MAILWIRE_WS_RATE_FRAMES", "MAILWIRE_MAX_MESSAGE_SIZE", "MAILWIRE_DEV", "MAILWIRE_RETRY_SCHEDULE"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not name %s", err, want)
		}
	}
	// A bad variable is not reported when the flag is given.
	_, err = parseServe(t, "--ws-rate-frames", "5", "--max-message-size", "1MiB", "--dev", "--retry-schedule", "0s")
	if err != nil {
		t.Errorf("variables overridden by flags still reported: %v", err)
	}
}

func TestServeValidate(t *testing.T) {
	clearEnv(t)
	c, err := parseServe(t)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}

	c, err = parseServe(t,
		"--http-addr", "nonsense",
		"--smtp-addr", "also nonsense",
		"--smtp-tls-cert", "cert.pem",
		"--data-dir", "",
		"--mail-domain", "bad@domain",
		"--ws-ping-interval", "1ms",
		"--ws-pong-timeout", "0s",
		"--ws-max-conns-per-account", "0",
		"--ws-rate-frames", "0",
		"--ws-rate-window", "0s",
		"--ws-max-frame", "10",
		"--ws-max-pending", "1KiB",
		"--ws-ack-timeout", "-1s",
		"--replay-limit", "0",
		"--webhook-timeout", "1ms",
		"--webhook-workers", "0",
		"--retention", "0s",
		"--failed-retention", "-1h",
		"--max-message-size", "100",
		"--log-level", "loud",
		"--log-format", "xml",
		"--shutdown-timeout", "0s",
		"--public-url", "mail.example.com",
	)
	if err != nil {
		t.Fatal(err)
	}
	err = c.validate()
	if err == nil {
		t.Fatal("an invalid configuration validated")
	}
	for _, want := range []string{
		"--http-addr", "--smtp-addr", "--smtp-tls-cert and --smtp-tls-key", "--data-dir", "--mail-domain",
		"--ws-ping-interval", "--ws-pong-timeout", "--ws-max-conns-per-account", "--ws-rate-frames", "--ws-rate-window",
		"--ws-max-frame", "--ws-max-pending", "--ws-ack-timeout", "--replay-limit", "--webhook-timeout", "--webhook-workers",
		"--retention", "--failed-retention", "--max-message-size", "--log-level", "--log-format", "--shutdown-timeout",
		"--public-url",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("validate does not report %s:\n%v", want, err)
		}
	}
	if n := strings.Count(err.Error(), "\n  "); n != 23 {
		t.Errorf("validate reported %d problems, want 23 (one per line):\n%v", n, err)
	}

	// Each limit at its bound is valid.
	c, _ = parseServe(t, "--ws-max-frame", "256", "--ws-max-pending", "4KiB", "--max-message-size", "1KiB",
		"--replay-limit", "10000", "--webhook-workers", "10000", "--webhook-timeout", "100ms", "--smtp-addr", "",
		"--retry-schedule", "0s", "--log-level", "debug", "--log-format", "json", "--public-url", "https://mail.example.com/")
	if err := c.validate(); err != nil {
		t.Errorf("bounds rejected: %v", err)
	}
}
