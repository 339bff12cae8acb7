package bench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Result is the record of one scenario run: what ran where, and what it
// measured. It is written as JSON (the machine record), as a human
// summary, and as a self-contained HTML page of charts.
type Result struct {
	Scenario string            `json:"scenario"`
	Label    string            `json:"label,omitempty"`
	Started  time.Time         `json:"started"`
	Seconds  float64           `json:"duration_s"`
	Machine  Machine           `json:"machine"`
	Commit   string            `json:"commit"`
	Command  string            `json:"command"`
	Flags    map[string]string `json:"flags"`
	Server   *Server           `json:"server,omitempty"`
	Plan     *Plan             `json:"plan,omitempty"`
	Figures  []Figure          `json:"figures"`
	// Latency holds the distributions: "e2e" (inbound sent → frame or
	// webhook received), "ingest" (request → 202/250), "connect" (dial →
	// subscribed).
	Latency map[string]LatencySummary `json:"latency,omitempty"`
	Checks  []Check                   `json:"checks,omitempty"`
	Errors  map[string]int64          `json:"errors,omitempty"`
	Notes   []string                  `json:"notes,omitempty"`
	Series  []Point                   `json:"series,omitempty"`
	Samples []Sample                  `json:"samples,omitempty"` // server readings that per-connection figures come from
}

// Figure is one named number.
type Figure struct {
	Key   string  `json:"key"`
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit,omitempty"`
}

// Check compares a figure with a target from DESIGN.md.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Point is one second of a run.
type Point struct {
	T          float64 `json:"t"`                       // seconds since the run started
	Subscribed int64   `json:"subscribed"`              // sockets subscribed
	Connects   float64 `json:"connects_per_s"`          // connect attempts settled per second
	Closes     float64 `json:"closes_per_s"`            // client and server closes per second
	Events     float64 `json:"events_per_s"`            // event frames (or webhook requests) received per second
	Accepted   float64 `json:"accepted_per_s"`          // inbound messages accepted per second
	P50        float64 `json:"p50_ms"`                  // e2e latency of the second's first arrivals
	P99        float64 `json:"p99_ms"`                  //
	Max        float64 `json:"max_ms"`                  //
	IngestP99  float64 `json:"ingest_p99_ms"`           // request → 202/250
	ServerRSS  int64   `json:"server_rss_bytes"`        //
	ServerCPU  float64 `json:"server_cpu_pct"`          // % of one core
	ClientCPU  float64 `json:"client_cpu_pct"`          // % of one core (client processes)
	OtherCPU   float64 `json:"other_cpu_pct"`           // % of one core: every other process on the machine
	Goroutines int64   `json:"server_goroutines"`       //
	HeapInuse  int64   `json:"server_heap_inuse"`       //
	Deliveries float64 `json:"server_deliveries_per_s"` // mailwire_ws_deliveries_total per second
}

func (r *Result) add(key, name string, v float64, unit string) {
	r.Figures = append(r.Figures, Figure{Key: key, Name: name, Value: v, Unit: unit})
}

func (r *Result) check(name string, ok bool, format string, args ...any) {
	r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
}

func (r *Result) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Figure returns the value of a figure by key (0 when absent).
func (r *Result) Figure(key string) float64 {
	for _, f := range r.Figures {
		if f.Key == key {
			return f.Value
		}
	}
	return 0
}

func fmtNum(v float64) string {
	switch {
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return groupDigits(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 100:
		return groupDigits(fmt.Sprintf("%.0f", v))
	case math.Abs(v) >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.3g", v)
}

// groupDigits puts thousands separators into an integer's text.
func groupDigits(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// WriteSummary writes the human summary.
func (r *Result) WriteSummary(w io.Writer) {
	fmt.Fprintf(w, "== %s", r.Scenario)
	if r.Label != "" {
		fmt.Fprintf(w, " (%s)", r.Label)
	}
	fmt.Fprintf(w, " — %s, commit %s, %d cores, %.0fs\n", r.Started.Format("2006-01-02 15:04"), r.Commit, r.Machine.Cores, r.Seconds)
	if r.Server != nil {
		fmt.Fprintf(w, "   server: %s %s", r.Server.Mode, r.Server.URL)
		if r.Server.PID > 0 {
			fmt.Fprintf(w, " pid %d", r.Server.PID)
		}
		if r.Server.ConnsPerAccount > 0 {
			fmt.Fprintf(w, ", cap %d conns/account", r.Server.ConnsPerAccount)
		}
		fmt.Fprintln(w)
	}
	width := 0
	for _, f := range r.Figures {
		width = max(width, len(f.Name))
	}
	for _, f := range r.Figures {
		fmt.Fprintf(w, "   %-*s  %12s %s\n", width, f.Name, fmtNum(f.Value), f.Unit)
	}
	names := make([]string, 0, len(r.Latency))
	for n := range r.Latency {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		fmt.Fprintf(w, "   %-8s %10s %9s %9s %9s %9s %9s %9s %9s\n", "latency", "count", "min", "p50", "p90", "p99", "p99.9", "max", "(ms)")
		for _, n := range names {
			l := r.Latency[n]
			fmt.Fprintf(w, "   %-8s %10d %9.3f %9.3f %9.3f %9.3f %9.3f %9.3f\n", n, l.Count, l.Min, l.P50, l.P90, l.P99, l.P999, l.Max)
		}
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "MISS"
		}
		fmt.Fprintf(w, "   [%s] %s: %s\n", mark, c.Name, c.Detail)
	}
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "   errors:\n")
		for _, k := range sortedKeys(r.Errors) {
			fmt.Fprintf(w, "     %8d  %s\n", r.Errors[k], k)
		}
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "   note: %s\n", n)
	}
}

func sortedKeys(m map[string]int64) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// WriteFiles writes <dir>/<name>.json and <dir>/<name>.html.
func (r *Result) WriteFiles(dir, name string) (jsonPath, htmlPath string, err error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("cannot create %s: %w", dir, err)
	}
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", "", err
	}
	jsonPath = filepath.Join(dir, name+".json")
	if err := os.WriteFile(jsonPath, append(b, '\n'), 0o644); err != nil {
		return "", "", err
	}
	var h bytes.Buffer
	r.WriteHTML(&h)
	htmlPath = filepath.Join(dir, name+".html")
	if err := os.WriteFile(htmlPath, h.Bytes(), 0o644); err != nil {
		return "", "", err
	}
	return jsonPath, htmlPath, nil
}

// WriteHTML writes a self-contained page: the summary and SVG charts of
// the latency distribution and of throughput and latency over time.
func (r *Result) WriteHTML(w io.Writer) {
	var sum bytes.Buffer
	r.WriteSummary(&sum)
	fmt.Fprintf(w, `<!doctype html><html><head><meta charset="utf-8"><title>mailwire-bench %s</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;color:#222}pre{background:#f6f6f6;padding:12px;overflow:auto}
svg{display:block;margin:12px 0}text{font:12px system-ui,sans-serif}</style></head><body>
<h1>mailwire-bench: %s</h1><pre>%s</pre>
`, html.EscapeString(r.Scenario), html.EscapeString(r.Scenario), html.EscapeString(sum.String()))
	var dist []line
	colors := []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}
	names := make([]string, 0, len(r.Latency))
	for n := range r.Latency {
		names = append(names, n)
	}
	sort.Strings(names)
	for i, n := range names {
		l := line{name: n, color: colors[i%len(colors)]}
		for _, p := range r.Latency[n].Curve {
			if p.Percentile >= 100 {
				continue // the maximum is in the summary; 1/(1-p) has no place for it
			}
			x := 1 / (1 - p.Percentile/100)
			l.pts = append(l.pts, [2]float64{math.Log10(x), p.Ms})
		}
		if len(l.pts) > 0 {
			dist = append(dist, l)
		}
	}
	if len(dist) > 0 {
		writeChart(w, "Latency by percentile", "percentile", "ms", dist, true)
	}
	if len(r.Series) > 1 {
		var tp, lat, res []line
		pick := func(name, color string, f func(Point) float64) line {
			l := line{name: name, color: color}
			for _, p := range r.Series {
				l.pts = append(l.pts, [2]float64{p.T, f(p)})
			}
			return l
		}
		nonzero := func(l line) bool {
			for _, p := range l.pts {
				if p[1] != 0 {
					return true
				}
			}
			return false
		}
		for _, l := range []line{
			pick("events received/s", "#1f77b4", func(p Point) float64 { return p.Events }),
			pick("inbound accepted/s", "#2ca02c", func(p Point) float64 { return p.Accepted }),
			pick("connects/s", "#9467bd", func(p Point) float64 { return p.Connects }),
			pick("closes/s", "#8c564b", func(p Point) float64 { return p.Closes }),
		} {
			if nonzero(l) {
				tp = append(tp, l)
			}
		}
		for _, l := range []line{
			pick("p50", "#1f77b4", func(p Point) float64 { return p.P50 }),
			pick("p99", "#d62728", func(p Point) float64 { return p.P99 }),
			pick("max", "#7f7f7f", func(p Point) float64 { return p.Max }),
			pick("ingest p99", "#2ca02c", func(p Point) float64 { return p.IngestP99 }),
		} {
			if nonzero(l) {
				lat = append(lat, l)
			}
		}
		for _, l := range []line{
			pick("server CPU %", "#d62728", func(p Point) float64 { return p.ServerCPU }),
			pick("client CPU %", "#1f77b4", func(p Point) float64 { return p.ClientCPU }),
			pick("other processes CPU %", "#7f7f7f", func(p Point) float64 { return p.OtherCPU }),
			pick("subscribed (÷100)", "#9467bd", func(p Point) float64 { return float64(p.Subscribed) / 100 }),
			pick("server RSS MiB", "#2ca02c", func(p Point) float64 { return float64(p.ServerRSS) / (1 << 20) }),
		} {
			if nonzero(l) {
				res = append(res, l)
			}
		}
		if len(tp) > 0 {
			writeChart(w, "Throughput over time", "s", "per second", tp, false)
		}
		if len(lat) > 0 {
			writeChart(w, "Latency over time (per second)", "s", "ms", lat, false)
		}
		if len(res) > 0 {
			writeChart(w, "Resources over time", "s", "", res, false)
		}
	}
	fmt.Fprintf(w, "</body></html>\n")
}

type line struct {
	name, color string
	pts         [][2]float64
}

// writeChart draws lines on one SVG plot. logPct: x is log10(1/(1-p)),
// labelled as percentiles.
func writeChart(w io.Writer, title, xl, yl string, lines []line, logPct bool) {
	const W, H, L, R, T, B = 760.0, 320.0, 64.0, 170.0, 30.0, 40.0
	minX, maxX, maxY := math.Inf(1), math.Inf(-1), 0.0
	for _, l := range lines {
		for _, p := range l.pts {
			minX, maxX, maxY = math.Min(minX, p[0]), math.Max(maxX, p[0]), math.Max(maxY, p[1])
		}
	}
	if logPct {
		minX = 0
	}
	if maxX <= minX {
		maxX = minX + 1
	}
	maxY = niceCeil(maxY)
	sx := func(x float64) float64 { return L + (x-minX)/(maxX-minX)*(W-L-R) }
	sy := func(y float64) float64 { return H - B - y/maxY*(H-T-B) }
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f">`, W, H, W, H)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="#fff"/><text x="%.0f" y="18" font-weight="bold">%s</text>`, L, html.EscapeString(title))
	for i := 0; i <= 4; i++ {
		y := maxY * float64(i) / 4
		fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`,
			L, W-R, sy(y), sy(y), L-6, sy(y)+4, fmtNum(y))
	}
	if logPct {
		for k := 0.0; k <= maxX; k++ {
			label := strconv.FormatFloat(100*(1-math.Pow(10, -k)), 'f', max(0, int(k)-2), 64) + "%"
			fmt.Fprintf(w, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#eee"/><text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`,
				sx(k), sx(k), T, H-B, sx(k), H-B+16, label)
		}
	} else {
		for i := 0; i <= 5; i++ {
			x := minX + (maxX-minX)*float64(i)/5
			fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, sx(x), H-B+16, fmtNum(math.Round(x)))
		}
	}
	fmt.Fprintf(w, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text><text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`,
		(L+W-R)/2, H-6, html.EscapeString(xl), (T+H-B)/2, (T+H-B)/2, html.EscapeString(yl))
	for i, l := range lines {
		var pts strings.Builder
		for _, p := range l.pts {
			fmt.Fprintf(&pts, "%.1f,%.1f ", sx(p[0]), sy(p[1]))
		}
		fmt.Fprintf(w, `<polyline fill="none" stroke="%s" stroke-width="1.6" points="%s"/>`, l.color, pts.String())
		fmt.Fprintf(w, `<rect x="%.1f" y="%.1f" width="12" height="3" fill="%s"/><text x="%.1f" y="%.1f">%s</text>`,
			W-R+12, T+10+float64(i)*18, l.color, W-R+30, T+14+float64(i)*18, html.EscapeString(l.name))
	}
	fmt.Fprintf(w, "</svg>\n")
}

// niceCeil rounds up to 1, 2 or 5 × a power of ten.
func niceCeil(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

// Doc markers: UpdateDoc rewrites only what lies between them.
const (
	docBegin = "<!-- bench:standard:begin -->"
	docEnd   = "<!-- bench:standard:end -->"
)

// UpdateDoc replaces the region between the standard markers in path
// with region (creating the file, or appending the markers, when
// missing).
func UpdateDoc(path, region string) error {
	old, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("cannot read %s: %w", path, err)
	}
	body := docBegin + "\n" + strings.TrimRight(region, "\n") + "\n" + docEnd
	s := string(old)
	i, j := strings.Index(s, docBegin), strings.Index(s, docEnd)
	switch {
	case len(old) == 0:
		s = "# Benchmarks\n\n" + body + "\n"
	case i >= 0 && j > i:
		s = s[:i] + body + s[j+len(docEnd):]
	default:
		s = strings.TrimRight(s, "\n") + "\n\n" + body + "\n"
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(s), 0o644)
}
