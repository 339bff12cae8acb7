package engine_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
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
	metrics := scrapeAfterTraffic(t)
	for _, want := range []string{
		"# TYPE mailwire_webhook_duration_seconds histogram\n",
		`mailwire_webhook_duration_seconds_bucket{le="+Inf"} 2`,
		"mailwire_events_failed_total 1\n",
		"# TYPE mailwire_smtp_store_duration_seconds histogram\n",
		"# TYPE mailwire_pebble_wal_fsync_seconds histogram\n",
		`mailwire_build_info{version="test"} 1`,
		"mailwire_delivery_overdue 0\n",
	} {
		if strings.Contains(want, "pebble") && testserver.OnNATSEnv() {
			continue
		}
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

// scrapeAfterTraffic starts a node, sends traffic through every side
// (HTTP, a WebSocket, a webhook that fails, SMTP registered) and returns
// its /metrics.
func scrapeAfterTraffic(t *testing.T) []byte {
	t.Helper()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusInternalServerError)
	}))
	defer hook.Close()
	s := startAPI(t, func(c *app.Config) { c.SMTP.Addr = "127.0.0.1:0" })
	a := s.NewAccount("a")
	in := s.NewInbox(a.Key, "agent")
	st, body, _ := call(s, "PATCH", "/v1/inboxes/"+in, a.Key, map[string]string{"webhookUrl": hook.URL})
	if st != http.StatusOK {
		t.Fatalf("set webhook: %d %s", st, body)
	}
	evt := s.Inbound(a.Key, in, "m")
	dialWS(t, s, a.Key) // closed at the test's end
	testserver.WaitFor(t, 10*time.Second, "the event fails", func() bool { return s.EventStatus(a.Key, evt) == "failed" })

	// The failed counter moves once the failure is committed, a moment
	// after the API shows the status.
	var metrics []byte
	testserver.WaitFor(t, 10*time.Second, "mailwire_events_failed_total 1", func() bool {
		_, metrics, _ = call(s, "GET", "/metrics", "", nil)
		return bytes.Contains(metrics, []byte("mailwire_events_failed_total 1\n"))
	})
	return metrics
}

// TestMonitoringFiles checks docs/monitoring: the alert rules with
// `promtool check rules` and their unit tests with `promtool test rules`,
// and that every mailwire_ metric the rules and the Grafana dashboard
// query is one the server exports, and that the dashboard's PromQL parses.
func TestMonitoringFiles(t *testing.T) {
	t.Parallel()
	promtool := testserver.Tool(t, "/usr/bin/promtool", "prometheus")
	const dir = "../docs/monitoring"
	for _, args := range [][]string{{"check", "rules", "mailwire-alerts.yml"}, {"test", "rules", "mailwire-alerts.test.yml"}} {
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	exported := map[string]bool{}
	for _, line := range strings.Split(string(scrapeAfterTraffic(t)), "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			exported[strings.Fields(rest)[0]] = true
		}
	}
	var exprs []string
	rules, err := os.ReadFile(filepath.Join(dir, "mailwire-alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	exprs = append(exprs, string(rules))
	raw, err := os.ReadFile(filepath.Join(dir, "mailwire-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	queries := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
			queries++
		}
	}
	if queries < 20 {
		t.Errorf("the dashboard has %d queries", queries)
	}
	// promtool parses the dashboard's PromQL as recording rules (with
	// Grafana's variables given values).
	vars := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*", "$job", ".*")
	var rf strings.Builder
	rf.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	for i, e := range exprs[1:] {
		q, _ := json.Marshal(vars.Replace(e))
		rf.WriteString("      - record: dashboard:query" + strconv.Itoa(i) + "\n        expr: " + string(q) + "\n")
	}
	rfile := filepath.Join(t.TempDir(), "dashboard-rules.yml")
	if err := os.WriteFile(rfile, []byte(rf.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", rfile).CombinedOutput(); err != nil {
		t.Errorf("the dashboard's queries do not parse: %v\n%s", err, out)
	}
	name := regexp.MustCompile(`\bmailwire_[a-z0-9_]+`)
	for _, e := range exprs {
		for _, m := range name.FindAllString(e, -1) {
			fam := m
			for _, suf := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suf); ok && exported[b] {
					fam = b
				}
			}
			onNATS := testserver.OnNATSEnv()
			if !exported[fam] && !(onNATS && pebbleOnly(fam)) && !(!onNATS && clusterOnly(fam)) {
				t.Errorf("%s is queried by docs/monitoring but not exported by /metrics", m)
			}
		}
	}
}

// clusterOnly reports whether a metric family comes from the cluster
// store and its pusher (a node on NATS): the dashboard's cluster row,
// checked on the suite's NATS pass.
func clusterOnly(fam string) bool {
	return strings.HasPrefix(fam, "mailwire_nats_") || strings.HasPrefix(fam, "mailwire_cluster_")
}

// pebbleOnly reports whether a metric family comes from the single
// node's Pebble store (its storage, its state writer and its data
// directory's free space): a cluster node does not export it.
func pebbleOnly(fam string) bool {
	for _, p := range []string{"mailwire_pebble_", "mailwire_disk_", "mailwire_delivery_state_commit_", "mailwire_delivery_writer_"} {
		if strings.HasPrefix(fam, p) {
			return true
		}
	}
	return false
}
