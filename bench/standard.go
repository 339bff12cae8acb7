package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"
)

// stdRun is one run of the standard set.
type stdRun struct {
	name  string // file name
	scen  string
	what  string
	args  []string
	heads []string // figure keys for the doc's table
}

// standardSet is the short set `make bench` runs (under 5 minutes on the
// 2-core machine); quick is a tiny version for tests.
func standardSet(quick bool) []stdRun {
	if quick {
		return []stdRun{
			{"connect", "connect", "60 idle subscribed connections", []string{"--conns", "60", "--hold", "1s", "--settle", "200ms", "--gc=false", "--ping-interval", "300ms"}, []string{"rss_per_conn", "heap_stack_per_conn", "goroutines_per_conn", "pings_answered"}},
			{"fanout", "fanout", "60 connections × 6 inboxes at 100/s", []string{"--conns", "60", "--inboxes", "6", "--rate", "100", "--duration", "1s", "--warmup", "200ms", "--drain", "3s"}, []string{"delivered_per_s", "lost", "duplicates"}},
			{"ingest-http", "ingest", "inbound over HTTP, 8 senders", []string{"--duration", "500ms", "--warmup", "0s", "--senders", "8", "--inboxes", "4", "--accounts", "2"}, []string{"accepted_per_s"}},
			{"ingest-smtp", "ingest", "inbound over SMTP, 8 senders", []string{"--via", "smtp", "--duration", "500ms", "--warmup", "0s", "--senders", "8", "--inboxes", "4", "--accounts", "2"}, []string{"accepted_per_s"}},
			{"webhook", "webhook", "webhooks at 50/s", []string{"--rate", "50", "--duration", "1s", "--warmup", "0s", "--inboxes", "4", "--accounts", "2", "--drain", "5s"}, []string{"delivered_per_s", "lost"}},
			{"replay", "replay", "reconnect storms, 40 connections", []string{"--conns", "40", "--inboxes", "4", "--rate", "40", "--duration", "1500ms", "--warmup", "300ms", "--storm-every", "500ms", "--storm-pause", "100ms", "--drain", "5s"}, []string{"reconnects", "lost", "duplicates"}},
			{"churn", "churn", "churn 40/s over 40 connections", []string{"--conns", "40", "--churn-rate", "40", "--duration", "1s", "--settle", "100ms", "--gc=false"}, []string{"connects_per_s", "churn_failed"}},
		}
	}
	return []stdRun{
		{"connect", "connect", "5,000 idle subscribed connections (mixed subscriptions), pings every 5 s",
			[]string{"--conns", "5000", "--conn-rate", "2500", "--ping-interval", "5s", "--hold", "11s"},
			[]string{"rss_per_conn", "heap_stack_per_conn", "goroutines_per_conn", "slab_per_conn", "client_rss_per_conn"}},
		{"fanout-1k", "fanout", "10,000 connections, 1,000 inboxes × 10, 1,000 inbound/s",
			[]string{"--conns", "10000", "--inboxes", "1000", "--rate", "1000", "--duration", "20s", "--warmup", "3s", "--conn-rate", "4000"},
			[]string{"delivered_per_s", "lost", "duplicates", "server_cpu", "other_cpu"}},
		{"fanout-5k", "fanout", "10,000 connections, 1,000 inboxes × 10, 5,000 inbound/s",
			[]string{"--conns", "10000", "--inboxes", "1000", "--rate", "5000", "--duration", "20s", "--warmup", "3s", "--conn-rate", "4000"},
			[]string{"accepted_per_s", "delivered_per_s", "lost", "duplicates", "lag_max", "server_cpu", "other_cpu"}},
		{"fanout-max", "fanout", "10,000 connections, 1,000 inboxes × 10, inbound as fast as 64 senders go",
			[]string{"--conns", "10000", "--inboxes", "1000", "--rate", "0", "--duration", "15s", "--warmup", "3s", "--conn-rate", "4000"},
			[]string{"accepted_per_s", "delivered_per_s", "lost", "duplicates", "server_cpu", "other_cpu"}},
		{"ingest-http", "ingest", "durable inbound over HTTP, 64 senders",
			[]string{"--duration", "10s", "--warmup", "1s"},
			[]string{"accepted_per_s", "send_failed", "server_cpu", "fsync_p99", "other_cpu"}},
		{"ingest-smtp", "ingest", "durable inbound over SMTP, 32 senders",
			[]string{"--via", "smtp", "--senders", "32", "--duration", "10s", "--warmup", "1s"},
			[]string{"accepted_per_s", "send_failed", "server_cpu", "fsync_p99", "other_cpu"}},
		{"webhook", "webhook", "webhooks to a local fasthttp sink, 500 inbound/s, signatures checked",
			[]string{"--rate", "500", "--duration", "10s", "--verify-signature"},
			[]string{"delivered_per_s", "lost", "duplicates", "other_cpu"}},
		{"replay", "replay", "2,000 connections, 200 inbound/s, 20 % dropped every 3 s, back after 0.5 s with last_event_id",
			[]string{"--conns", "2000", "--inboxes", "200", "--rate", "200", "--duration", "15s"},
			[]string{"reconnects", "lost", "duplicates", "other_cpu"}},
		{"churn", "churn", "2,000 connections, 500 closed and reopened per second",
			[]string{"--conns", "2000", "--churn-rate", "500", "--duration", "10s"},
			[]string{"connects_per_s", "churn_failed", "goroutines_delta"}},
	}
}

// runStandard runs the standard set, writes each result, and updates the
// doc region when asked.
func runStandard(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o := baseDefaults()
	o.Out = filepath.Join("docs", "bench", "standard")
	fs := flag.NewFlagSet("mailwire-bench standard", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, gServer|gOut|gStandard)
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: mailwire-bench standard [flags]

The short standard set (under 5 minutes on 2 cores), each run against a fresh server:
`)
		for _, r := range standardSet(false) {
			fmt.Fprintf(stderr, "  %-12s mailwire-bench %s %s\n", r.name, r.scen, strings.Join(r.args, " "))
		}
		fmt.Fprintf(stderr, "\nResults go to --out (one .json and .html per run); --update-doc rewrites the marked region of a file.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	var common []string
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "server", "server-bin", "admin-token", "smtp", "server-pid", "server-cap", "server-log", "data-parent", "fsync-probe":
			common = append(common, "--"+f.Name+"="+f.Value.String())
		}
	})
	for _, a := range o.ServerArgs {
		common = append(common, "--server-arg="+a)
	}
	t0 := time.Now()
	var results []*Result
	var runs []stdRun
	failed := 0
	for _, r := range standardSet(o.Quick) {
		if ctx.Err() != nil {
			break
		}
		s := findScenario(r.scen)
		ro, err := parse(s, append(append([]string(nil), common...), r.args...), stderr)
		if err != nil {
			fmt.Fprintf(stderr, "BUG: standard run %s: %v\n", r.name, err)
			return 1
		}
		ro.Label = r.name
		if o.Label != "" {
			ro.Label = o.Label + " " + r.name
		}
		res, err := Run(ctx, r.scen, ro, stdout)
		if err != nil {
			if res != nil && strings.Contains(err.Error(), "no SMTP listener") {
				fmt.Fprintf(stdout, "   skipped %s: %v\n", r.name, err)
				res.note("skipped: %v", err)
				res.Figures = nil
				results, runs = append(results, res), append(runs, r)
				continue
			}
			fmt.Fprintf(stderr, "%s: %v\n", r.name, err)
			failed++
		}
		if res == nil {
			continue
		}
		res.WriteSummary(stdout)
		if _, _, err := res.WriteFiles(o.Out, r.name); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		results, runs = append(results, res), append(runs, r)
	}
	fmt.Fprintf(stdout, "standard set: %d runs in %.0fs, results in %s\n", len(results), time.Since(t0).Seconds(), o.Out)
	if o.UpdateDoc != "" && len(results) > 0 {
		rel, err := filepath.Rel(filepath.Dir(o.UpdateDoc), o.Out)
		if err != nil {
			rel = o.Out
		}
		if err := UpdateDoc(o.UpdateDoc, standardRegion(results, runs, rel, time.Since(t0))); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		fmt.Fprintf(stdout, "updated %s\n", o.UpdateDoc)
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// standardRegion renders the doc region for the standard set.
func standardRegion(results []*Result, runs []stdRun, outRel string, took time.Duration) string {
	var b strings.Builder
	r0 := results[0]
	m := r0.Machine
	fmt.Fprintf(&b, "_Refreshed %s by `make bench` (`mailwire-bench standard`, %.0f s), commit `%s`, on %s: %d cores, %d GiB, Linux %s, %s, open-file limit %d, load average %s when the set started (the machine is shared: see each run's other-processes CPU). "+
		"Each run starts its own server (`%s`), separate from the client process unless noted. Records (JSON) and charts (HTML) of every run: [`%s/`](%s/)._\n\n",
		r0.Started.UTC().Format("2006-01-02 15:04 UTC"), took.Seconds(), r0.Commit, m.CPU, m.Cores, m.MemoryGiB, m.Kernel, m.Go, m.FDLimit, m.LoadAvg,
		serverMode(r0), outRel, outRel)
	fmt.Fprintf(&b, "| run | workload | key figures | e2e p50 / p99 / p99.9 / max (ms) | checks |\n|---|---|---|---|---|\n")
	for i, res := range results {
		r := runs[i]
		var figs []string
		for _, k := range r.heads {
			for _, f := range res.Figures {
				if f.Key == k {
					figs = append(figs, fmt.Sprintf("%s: **%s**%s", f.Name, fmtNum(f.Value), unitSuffix(f.Unit)))
				}
			}
		}
		if len(res.Figures) == 0 && len(res.Notes) > 0 {
			figs = append(figs, res.Notes[len(res.Notes)-1])
		}
		lat := "—"
		key := "e2e"
		if r.scen == "ingest" {
			key = "ingest"
		} else if r.scen == "connect" || r.scen == "churn" {
			key = "connect"
		}
		if l, ok := res.Latency[key]; ok && l.Count > 0 {
			lat = fmt.Sprintf("%s: %.2f / %.2f / %.2f / %.1f", key, l.P50, l.P99, l.P999, l.Max)
		}
		var checks []string
		for _, c := range res.Checks {
			mark := "✅"
			if !c.OK {
				mark = "❌"
			}
			checks = append(checks, mark+" "+c.Name+" ("+c.Detail+")")
		}
		fmt.Fprintf(&b, "| [%s](%s/%s.html) | %s | %s | %s | %s |\n", r.name, outRel, r.name, r.what,
			strings.Join(figs, "; "), lat, strings.Join(checks, "<br>"))
	}
	fmt.Fprintf(&b, "\nReproduce one run: `bin/mailwire-bench <scenario> <flags>` with the flags listed by `bin/mailwire-bench standard --help`.\n")
	return b.String()
}

func serverMode(r *Result) string {
	if r.Server == nil {
		return "?"
	}
	if r.Server.Mode == "spawn" {
		return "bin/mailwire serve, spawned"
	}
	return r.Server.Mode
}

func unitSuffix(u string) string {
	if u == "" {
		return ""
	}
	return " " + u
}
