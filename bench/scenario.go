package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"time"
)

// Options are every knob of every scenario; each scenario registers the
// groups it uses, with its own defaults.
type Options struct {
	// server
	Server       string
	ServerBin    string
	ServerArgs   stringList
	MoreServers  stringList
	AdminToken   string
	SMTP         string
	ServerPID    int
	ServerCap    int
	PingInterval time.Duration
	ServerLog    string
	DataParent   string
	FsyncProbe   int
	// output
	Out      string
	Label    string
	PprofDir string
	// clients
	Conns           int
	ConnRate        float64
	Dialers         int
	Pollers         int
	ClientProcs     int
	ConnsPerAccount int
	Inboxes         int
	Accounts        int
	Sources         string
	Mix             string
	Abrupt          bool
	Validate        bool
	// load
	Rate       float64
	Duration   time.Duration
	Warmup     time.Duration
	Drain      time.Duration
	Via        string
	Senders    int
	BodyBytes  int
	InjectDrop int
	InjectDup  int
	// connect
	Hold   time.Duration
	Settle time.Duration
	GC     bool
	// replay
	StormEvery    time.Duration
	StormFraction float64
	StormPause    time.Duration
	// churn
	ChurnRate float64
	// webhook
	VerifySig bool
	// standard
	UpdateDoc string
	Quick     bool

	args []string // the command line, for the record
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, " ") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// Flag groups.
const (
	gServer = 1 << iota
	gOut
	gClients
	gLoad
	gConnect
	gReplay
	gChurn
	gWebhook
	gStandard
)

func (o *Options) register(fs *flag.FlagSet, groups int) {
	if groups&gServer != 0 {
		fs.StringVar(&o.Server, "server", o.Server, "server under test: `spawn` (start bin/mailwire serve as its own process), inproc (a node in this process: shares the fd limit and every process figure), or http://host:port (a running server)")
		fs.StringVar(&o.ServerBin, "server-bin", o.ServerBin, "mailwire binary for --server spawn")
		fs.Var(&o.MoreServers, "ws-server", "another node (`http://host:port`) of the cluster --server belongs to (repeatable): WebSocket connections are spread over all of them in turn; the API calls and inbound mail go to --server")
		fs.Var(&o.ServerArgs, "server-arg", "extra `flag` for the spawned server (repeatable), e.g. --server-arg=--ws-max-pending=4MiB")
		fs.StringVar(&o.AdminToken, "admin-token", o.AdminToken, "admin token of an external server (spawn and inproc generate one)")
		fs.StringVar(&o.SMTP, "smtp", o.SMTP, "SMTP `host:port` of an external server (spawn and inproc use the one the server starts, if any)")
		fs.IntVar(&o.ServerPID, "server-pid", o.ServerPID, "process id of an external server, for /proc figures (default: found by its listening port)")
		fs.IntVar(&o.ServerCap, "server-cap", o.ServerCap, "per-account WebSocket cap to start the server with (default: --conns-per-account, at least 10)")
		fs.DurationVar(&o.PingInterval, "ping-interval", o.PingInterval, "WebSocket ping period and pong timeout of a started server (0: the server's defaults, 30s and 10s); the clients answer every ping, or the server drops them")
		fs.StringVar(&o.ServerLog, "server-log", o.ServerLog, "write the started server's log to this `file`")
		fs.StringVar(&o.DataParent, "data-parent", o.DataParent, "`directory` in which a started server gets its temporary data directory (default $TMPDIR; /dev/shm takes the disk's fsync out of the figures)")
		fs.IntVar(&o.FsyncProbe, "fsync-probe", o.FsyncProbe, "time this many fsyncs on the data directory's filesystem before the run and report them (0: off)")
	}
	if groups&gOut != 0 {
		fs.StringVar(&o.Out, "out", o.Out, "directory for <scenario>.json and <scenario>.html (default: a new directory under $TMPDIR/mailwire-bench)")
		fs.StringVar(&o.Label, "label", o.Label, "free text recorded with the result")
		fs.StringVar(&o.PprofDir, "pprof", o.PprofDir, "write a CPU profile of the measured phase and a heap profile to this `directory` (meaningful with --server inproc)")
	}
	if groups&gClients != 0 {
		fs.IntVar(&o.Conns, "conns", o.Conns, "WebSocket connections (logical subscribers)")
		fs.Float64Var(&o.ConnRate, "conn-rate", o.ConnRate, "new connections per second, reconnections included (0: as fast as possible)")
		fs.IntVar(&o.Dialers, "dialers", o.Dialers, "goroutines running connect(2); all else runs on nbio pollers")
		fs.IntVar(&o.Pollers, "pollers", o.Pollers, "nbio poller goroutines per client process")
		fs.IntVar(&o.ClientProcs, "client-procs", o.ClientProcs, "spread the connections over this many worker processes, each with its own 20,000 descriptors (0: this process)")
		fs.IntVar(&o.ConnsPerAccount, "conns-per-account", o.ConnsPerAccount, "connections per account: the run creates ⌈conns/this⌉ accounts (the server's default cap is 10)")
		fs.StringVar(&o.Sources, "sources", o.Sources, "local addresses to connect from: loopback addresses and prefixes, comma-separated (each offers ~28k ports)")
		fs.StringVar(&o.Mix, "mix", o.Mix, "subscription mix: all (every inbox), inbox (one inbox by id), type (event_types filter), as shares")
		fs.BoolVar(&o.Abrupt, "abrupt", o.Abrupt, "client-initiated closes drop the socket (RST) instead of a close handshake")
		fs.BoolVar(&o.Validate, "validate", o.Validate, "decode every event frame as JSON and count those that do not decode (costs client CPU)")
	}
	if groups&(gClients|gWebhook) != 0 {
		fs.IntVar(&o.Inboxes, "inboxes", o.Inboxes, "inboxes in all, spread over the accounts (inbox i belongs to account i mod accounts; 0 with connect and churn: one per account)")
	}
	if groups&gLoad != 0 {
		fs.Float64Var(&o.Rate, "rate", o.Rate, "inbound messages per second (0: as fast as --senders allow)")
		fs.DurationVar(&o.Duration, "duration", o.Duration, "measured load duration (after --warmup)")
		fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "load before the measurement starts (not in the figures)")
		fs.DurationVar(&o.Drain, "drain", o.Drain, "after the load, how long to wait for events still in flight before counting them lost")
		fs.StringVar(&o.Via, "via", o.Via, "inbound path: http (POST /v1/inboxes/{id}/inbound) or smtp")
		fs.IntVar(&o.Senders, "senders", o.Senders, "concurrent inbound requests (connections); concurrency lets the server group fsyncs")
		fs.IntVar(&o.BodyBytes, "body-bytes", o.BodyBytes, "message text size (200 gives ~750-byte event frames)")
		fs.IntVar(&o.InjectDrop, "inject-drop-every", o.InjectDrop, "self-check: count every Nth message as sent without sending it (must show as lost)")
		fs.IntVar(&o.InjectDup, "inject-dup-every", o.InjectDup, "self-check: send every Nth message twice with the same marker (must show as duplicates)")
	}
	if groups&gConnect != 0 {
		fs.DurationVar(&o.Hold, "hold", o.Hold, "keep the connections open this long after they are measured (pings are answered)")
		fs.DurationVar(&o.Settle, "settle", o.Settle, "wait this long after the last connection before measuring")
		fs.BoolVar(&o.GC, "gc", o.GC, "before each heap reading, drive the server's GC by scraping /metrics until a GC cycle ends (live heap, not garbage)")
	}
	if groups&gReplay != 0 {
		fs.DurationVar(&o.StormEvery, "storm-every", o.StormEvery, "period of reconnect storms")
		fs.Float64Var(&o.StormFraction, "storm-fraction", o.StormFraction, "share of the subscribed connections dropped in each storm")
		fs.DurationVar(&o.StormPause, "storm-pause", o.StormPause, "how long dropped subscribers stay away before reconnecting with last_event_id")
	}
	if groups&gChurn != 0 {
		fs.Float64Var(&o.ChurnRate, "churn-rate", o.ChurnRate, "connections closed and reopened per second")
	}
	if groups&gWebhook != 0 {
		fs.BoolVar(&o.VerifySig, "verify-signature", o.VerifySig, "check X-Signature (HMAC-SHA256) of every webhook request")
		fs.IntVar(&o.Accounts, "accounts", o.Accounts, "accounts (each with a webhook, or sending inbound)")
	}
	if groups&gStandard != 0 {
		fs.StringVar(&o.UpdateDoc, "update-doc", o.UpdateDoc, "rewrite the region between <!-- bench:standard:begin/end --> of this `file` with the figures")
		fs.BoolVar(&o.Quick, "quick", o.Quick, "a smaller set (tests, smoke runs)")
	}
}

// scenario is one named benchmark.
type scenario struct {
	name     string
	summary  string
	doc      string
	groups   int
	defaults func(o *Options)
	run      func(e *env) error
}

func baseDefaults() Options {
	return Options{
		Server: "spawn", ServerBin: filepath.Join("bin", "mailwire"),
		Conns: 1000, ConnRate: 2000, Dialers: 4, Pollers: 1, ConnsPerAccount: 10,
		Sources: "127.0.1.0/28", Mix: "inbox=1",
		Duration: 10 * time.Second, Warmup: 2 * time.Second, Drain: 10 * time.Second,
		Via: "http", Senders: 64, BodyBytes: 200,
		Settle: 3 * time.Second, FsyncProbe: 200, StormEvery: 3 * time.Second, StormFraction: 0.2, StormPause: 500 * time.Millisecond,
		ChurnRate: 200, Accounts: 10, Inboxes: 100,
	}
}

var scenarios []*scenario

func init() {
	scenarios = []*scenario{
		{
			name: "connect", summary: "hold N idle subscribed connections; server memory, goroutines and kernel memory per connection",
			doc: `Opens --conns connections at --conn-rate from the --sources addresses, authenticates, subscribes
with the --mix, then measures the server before and after: RSS (/proc/<pid>/status VmRSS), Go heap
in use and allocated, goroutine stacks, goroutines (from /metrics), kernel TCP buffer memory
(/proc/net/sockstat) and the slab caches an idle socket lives in (/proc/slabinfo: TCP,
sock_inode_cache, filp, dentry, eventpoll; both ends of a loopback connection count). Per
connection = (reading with N connections − reading before) / N. With --gc (the default) each heap
reading follows a GC cycle driven by scraping /metrics, so the heap is live data, not garbage.
The connections are then held for --hold, answering the server's pings.`,
			groups: gServer | gOut | gClients | gConnect,
			defaults: func(o *Options) {
				o.Conns, o.Mix, o.Hold, o.GC, o.Inboxes = 5000, "all=0.34,inbox=0.33,type=0.33", 10*time.Second, true, 0
			},
			run: runConnect,
		},
		{
			name: "fanout", summary: "events at rate R to connections spread over I inboxes; delivered frames/s, end-to-end latency, loss, duplicates",
			doc: `Creates --inboxes inboxes (one per account when --conns/--conns-per-account accounts allow) and
spreads --conns subscribers over them (--mix inbox=1: each subscribes to one inbox by id, so every
inbox has conns/inboxes subscribers). The generator then sends --rate inbound messages per second
round-robin over the inboxes for --warmup + --duration, each carrying its send time; every
subscriber records end-to-end latency (inbound sent → frame received; the server's durable write
is included) into an HDR histogram, and counts each (inbox, seq) it receives: lost = expected −
first arrivals after --drain, duplicates = repeated arrivals. In rate mode a message carries its
intended send time, so a generator that falls behind shows as latency (no coordinated omission).`,
			groups: gServer | gOut | gClients | gLoad,
			defaults: func(o *Options) {
				o.Conns, o.Inboxes, o.Rate = 10000, 1000, 1000
			},
			run: runFanout,
		},
		{
			name: "webhook", summary: "no WebSocket: events to a local fasthttp sink; deliveries/s and latency",
			doc: `Creates --accounts accounts and --inboxes inboxes, points every account's webhook at a fasthttp
sink on 127.0.0.1 (the started server allows private webhook URLs), and sends --rate inbound
messages per second. The sink counts deliveries per (inbox, seq) — retries show as duplicates —
and records latency from inbound sent to webhook request received.`,
			groups: gServer | gOut | gLoad | gWebhook,
			defaults: func(o *Options) {
				o.Rate, o.Inboxes = 500, 100
			},
			run: runWebhook,
		},
		{
			name: "ingest", summary: "durable inbound messages per second over HTTP or SMTP",
			doc: `Sends inbound mail as fast as --senders concurrent requests allow (or at --rate) over --via http or
smtp, with no subscriber and no webhook; every answer (202, or 250 after DATA) means the message
and its event are fsync-durable. Reports accepted/s and the request latency distribution.`,
			groups: gServer | gOut | gLoad | gWebhook,
			defaults: func(o *Options) {
				o.Rate, o.Inboxes = 0, 100
			},
			run: runIngest,
		},
		{
			name: "replay", summary: "reconnect storms with last_event_id under load; loss, duplicates, reconnect time",
			doc: `Like fanout, and every --storm-every a --storm-fraction of the subscribed connections drop at once
(RST with --abrupt, the default here; else a close handshake), stay away for --storm-pause, and
reconnect asking for replay with the last event_id they received. Events sent while they were
away must arrive by replay (at most the server's --replay-limit per subscribe): lost must stay 0;
duplicates are expected (replay overlapping live delivery is at-least-once) and counted.
Latency of replayed events includes the time away.`,
			groups: gServer | gOut | gClients | gLoad | gReplay,
			defaults: func(o *Options) {
				o.Conns, o.Inboxes, o.Rate, o.Abrupt, o.Duration = 2000, 200, 200, true, 15*time.Second
			},
			run: runReplay,
		},
		{
			name: "churn", summary: "connects and disconnects per second at a steady connection count",
			doc: `Connects --conns subscribers, then every second closes --churn-rate of them and reconnects them at
once (dial, upgrade, authenticate, subscribe), for --duration. Reports connects and closes per
second achieved, connect latency (dial → "subscribed") during the churn, failures by cause, and
the server's goroutines and heap before and after (a leak shows as growth).`,
			groups: gServer | gOut | gClients | gLoad | gChurn | gConnect,
			defaults: func(o *Options) {
				o.Conns, o.Inboxes, o.ChurnRate, o.Duration, o.ConnRate, o.Mix = 2000, 0, 500, 15*time.Second, 0, "all=0.5,inbox=0.25,type=0.25"
			},
			run: runChurn,
		},
	}
}

// Usage writes the command's help.
func Usage(w io.Writer) {
	fmt.Fprintf(w, `mailwire-bench: load harness for mailwire (talks only the public HTTP and WebSocket protocol)

Usage:
  mailwire-bench <scenario> [flags]     run one scenario; mailwire-bench <scenario> --help lists its knobs
  mailwire-bench standard [flags]       the short standard set (< 5 minutes), optionally --update-doc FILE

Scenarios:
`)
	for _, s := range scenarios {
		fmt.Fprintf(w, "  %-10s %s\n", s.name, s.summary)
	}
	fmt.Fprintf(w, "  %-10s %s\n", "standard", "connect, fanout at 1k/s, 5k/s and max, ingest, webhook, replay, churn: short runs")
	fmt.Fprintf(w, `
Results: a summary on stdout, and <out>/<scenario>.json (machine, commit, flags, figures, series)
and <out>/<scenario>.html (latency distribution and throughput over time, self-contained SVG).
Method and reproduction: docs/bench/HARNESS.md.
`)
}

func findScenario(name string) *scenario {
	for _, s := range scenarios {
		if s.name == name {
			return s
		}
	}
	return nil
}

// errHelp: --help was asked for and printed.
var errHelp = errors.New("help")

// parse builds a scenario's options from args.
func parse(s *scenario, args []string, stderr io.Writer) (*Options, error) {
	o := baseDefaults()
	if s.defaults != nil {
		s.defaults(&o)
	}
	fs := flag.NewFlagSet("mailwire-bench "+s.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs, s.groups)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: mailwire-bench %s [flags]\n\n%s.\n\n%s\n\nFlags:\n", s.name, s.summary, s.doc)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, errHelp
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.args = append([]string{s.name}, args...)
	return &o, validate(&o, s.groups)
}

// validate reports every problem at once.
func validate(o *Options, groups int) error {
	var p []string
	check := func(ok bool, format string, args ...any) {
		if !ok {
			p = append(p, fmt.Sprintf(format, args...))
		}
	}
	if groups&gClients != 0 {
		check(o.Conns >= 1, "--conns must be at least 1")
		check(o.ConnRate >= 0, "--conn-rate must not be negative")
		check(o.Dialers >= 1 && o.Dialers <= 256, "--dialers must be 1..256")
		check(o.Pollers >= 1 && o.Pollers <= 64, "--pollers must be 1..64")
		check(o.ClientProcs >= 0 && o.ClientProcs <= 64, "--client-procs must be 0..64")
		check(o.ConnsPerAccount >= 1, "--conns-per-account must be at least 1")
		_, err := ParseMix(o.Mix)
		check(err == nil, "%v", err)
		_, err = parseSources(o.Sources)
		check(err == nil, "%v", err)
	}
	if groups&gLoad != 0 {
		check(o.Rate >= 0, "--rate must not be negative")
		check(o.Duration > 0, "--duration must be positive")
		check(o.Warmup >= 0 && o.Drain >= 0, "--warmup and --drain must not be negative")
		check(o.Via == "http" || o.Via == "smtp", "--via must be http or smtp")
		check(o.Senders >= 1 && o.Senders <= 4096, "--senders must be 1..4096")
		check(o.BodyBytes >= 0 && o.BodyBytes <= 16<<20, "--body-bytes must be 0..16MiB")
		check(o.InjectDrop >= 0 && o.InjectDup >= 0, "--inject-* must not be negative")
	}
	if groups&gReplay != 0 {
		check(o.StormEvery > 0, "--storm-every must be positive")
		check(o.StormFraction > 0 && o.StormFraction <= 1, "--storm-fraction must be in (0, 1]")
		check(o.StormPause >= 0, "--storm-pause must not be negative")
	}
	if groups&gChurn != 0 {
		check(o.ChurnRate > 0, "--churn-rate must be positive")
	}
	if len(p) > 0 {
		return errors.New("invalid flags:\n  " + strings.Join(p, "\n  "))
	}
	return nil
}

// flagsOf records every option value by flag name.
func flagsOf(o *Options, groups int) map[string]string {
	fs := flag.NewFlagSet("", flag.ContinueOnError)
	cp := *o
	cp.register(fs, groups)
	m := map[string]string{}
	fs.VisitAll(func(f *flag.Flag) {
		if f.Name == "admin-token" {
			return
		}
		m[f.Name] = f.Value.String()
	})
	return m
}

// Main runs the command: a scenario by name, "standard", or "worker".
// It returns the process exit code.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		Usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	name, rest := args[0], args[1:]
	if name == "worker" {
		if err := WorkerMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(stderr, err)
			return 1
		}
		return 0
	}
	if name == "standard" {
		return runStandard(ctx, rest, stdout, stderr)
	}
	s := findScenario(name)
	if s == nil {
		fmt.Fprintf(stderr, "unknown scenario %q\n\n", name)
		Usage(stderr)
		return 2
	}
	o, err := parse(s, rest, stderr)
	if errors.Is(err, errHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	res, err := Run(ctx, s.name, o, stdout)
	if res != nil {
		res.WriteSummary(stdout)
		dir := o.Out
		if dir == "" {
			dir = filepath.Join(os.TempDir(), "mailwire-bench", s.name+"-"+res.Started.Format("20060102-150405"))
		}
		j, h, werr := res.WriteFiles(dir, s.name)
		if werr != nil {
			fmt.Fprintln(stderr, werr)
			return 1
		}
		fmt.Fprintf(stdout, "   record: %s\n   chart:  %s\n", j, h)
	}
	if err != nil {
		fmt.Fprintln(stderr, "error:", err)
		return 1
	}
	return 0
}

// Run runs one scenario with o (progress lines to out) and returns its
// result; on error the result holds what was measured until then.
func Run(ctx context.Context, name string, o *Options, out io.Writer) (*Result, error) {
	s := findScenario(name)
	if s == nil {
		return nil, fmt.Errorf("unknown scenario %q", name)
	}
	if o.PprofDir != "" {
		// Every allocation of 512 bytes on average is sampled (default
		// 512 KiB): per-connection structures show in the heap profile.
		runtime.MemProfileRate = 512
	}
	e := &env{ctx: ctx, o: o, out: out, run: newRunID(), start: time.Now()}
	e.res = &Result{
		Scenario: name, Label: o.Label, Started: e.start, Machine: machineInfo(), Commit: commit(),
		Command: "mailwire-bench " + strings.Join(o.args, " "), Flags: flagsOf(o, s.groups),
		Latency: map[string]LatencySummary{}, Errors: map[string]int64{},
	}
	if out != nil {
		fmt.Fprintf(out, "-- %s (run %08x)\n", name, e.run)
	}
	err := s.run(e)
	e.finish()
	if len(e.res.Errors) == 0 {
		e.res.Errors = nil
	}
	return e.res, err
}

// mergeErrors adds counts into the result's error table.
func (e *env) mergeErrors(prefix string, m map[string]int64) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		e.res.Errors[prefix+k] += m[k]
	}
}

// mergeCloses adds the close codes the server sent, except 1000 (the
// echo of the pool's own closes), into the error table.
func (e *env) mergeCloses(m map[string]int64) {
	for k, v := range m {
		if k != "1000" {
			e.res.Errors["close "+k] += v
		}
	}
}
