package engine_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/app"
	"github.com/mailwire/mailwire/internal/testserver"
)

// TestMetricsPassPromtool runs Prometheus's own linter over the real
// server's /metrics after traffic on every side (HTTP, a WebSocket, a
// webhook that fails, SMTP): HELP and TYPE for every family, histograms
// with le buckets, counters named _total.
func TestMetricsPassPromtool(t *testing.T) {
	t.Parallel()
	promtool := testserver.Tool(t, "/usr/bin/promtool", "prometheus")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer hook.Close()
	s := startAPI(t, func(c *app.Config) { c.SMTPAddr = "127.0.0.1:0" })
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	st, body, _ := call(s, "PATCH", "/v1/inboxes/"+in, a.Key, map[string]string{"webhookUrl": hook.URL})
	if st != http.StatusOK {
		t.Fatalf("set webhook: %d %s", st, body)
	}
	evt := s.Inbound(a.Key, in, "m")
	dialWS(t, s, a.Key) // closed at the test's end
	testserver.WaitFor(t, 10*time.Second, "the event fails", func() bool { return s.EventStatus(a.Key, evt) == "failed" })

	_, metrics, _ := call(s, "GET", "/metrics", "", nil)
	for _, want := range []string{
		"# TYPE mailwire_webhook_duration_seconds histogram\n",
		`mailwire_webhook_duration_seconds_bucket{le="+Inf"} 2`,
		"mailwire_events_failed_total 1\n",
		"# TYPE mailwire_smtp_store_duration_seconds histogram\n",
		`mailwire_build_info{version="test"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(metrics)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
}
