// Package promtext writes /metrics in the Prometheus text format that
// `promtool check metrics` accepts: one HELP line with a real text and one
// TYPE line per metric family, histograms with `le` buckets.
//
// VictoriaMetrics/metrics writes the samples and, with ExposeMetadata, a
// HELP line without text and a TYPE line per family. Write fills in the
// text from a catalog every package adds to where it creates its metrics
// (Describe), puts together the samples of a family that is written in
// several pieces under one HELP/TYPE pair, types the library's `_total` gauges as
// counters, and leaves out the library's few families whose names break
// the Prometheus naming rules.
//
// Describe and Write are safe for concurrent use.
package promtext

import (
	"bufio"
	"bytes"
	"io"
	"strings"
	"sync"

	"github.com/VictoriaMetrics/metrics"
)

var catalog sync.Map // family name → help text

// Describe records the HELP text of a metric family and returns the
// family's name. Call it where the family's metrics are created; a
// family described twice keeps its first text.
func Describe(family, help string) string {
	catalog.LoadOrStore(family, help)
	return family
}

// Help is the recorded HELP text of family ("" when none).
func Help(family string) string {
	if v, ok := catalog.Load(family); ok {
		return v.(string)
	}
	return runtimeHelp[family]
}

// dropped are families of VictoriaMetrics' Go runtime metrics whose names
// break the naming rules promtool checks (a counter without `_total`, a
// gauge ending in `_count`); go_gomaxprocs and the GC figures cover them.
var dropped = map[string]bool{
	"go_cgo_calls_count": true,
	"go_gc_forced_count": true,
	"go_cpu_count":       true,
}

// Write writes what each of writers writes, with metadata, to w. The
// samples of a family written in several pieces (the cluster store writes
// one group per consumer) are put together under its one HELP/TYPE pair,
// as the text format wants.
func Write(w io.Writer, writers ...func(io.Writer)) {
	metrics.ExposeMetadata(true)
	var raw bytes.Buffer
	for _, f := range writers {
		f(&raw)
	}
	var order []*family
	byName := make(map[string]*family, 256)
	get := func(name string) *family {
		f := byName[name]
		if f == nil {
			f = &family{name: name}
			byName[name] = f
			order = append(order, f)
		}
		return f
	}
	var cur *family // the family whose TYPE line came last
	sc := bufio.NewScanner(&raw)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "# HELP "):
			// The text comes from the catalog; the TYPE line names the family.
		case strings.HasPrefix(line, "# TYPE "):
			fam, typ, _ := strings.Cut(line[len("# TYPE "):], " ")
			if typ == "gauge" && strings.HasSuffix(fam, "_total") {
				typ = "counter" // process_io_*_total: counters the library types as gauges
			}
			cur = get(fam)
			if cur.typ == "" {
				cur.typ = typ
			}
		case line == "" || strings.HasPrefix(line, "#"):
		default:
			name := sampleName(line)
			f := cur
			if f == nil || !belongs(name, f) {
				f = byName[name]
				if f == nil {
					for _, suf := range []string{"_bucket", "_sum", "_count"} {
						if base, ok := strings.CutSuffix(name, suf); ok && byName[base] != nil && byName[base].typ != "gauge" && byName[base].typ != "counter" {
							f = byName[base]
							break
						}
					}
				}
				if f == nil {
					f = get(name)
				}
			}
			f.samples = append(f.samples, line)
		}
	}
	out := bufio.NewWriterSize(w, 64<<10)
	for _, f := range order {
		if dropped[f.name] || len(f.samples) == 0 {
			continue
		}
		out.WriteString("# HELP " + f.name + " " + escapeHelp(Help(f.name)) + "\n")
		if f.typ != "" {
			out.WriteString("# TYPE " + f.name + " " + f.typ + "\n")
		}
		for _, l := range f.samples {
			out.WriteString(l)
			out.WriteByte('\n')
		}
	}
	_ = out.Flush()
}

// family is one metric family of the output.
type family struct {
	name, typ string
	samples   []string
}

// belongs tells whether a sample called name is one of family f's.
func belongs(name string, f *family) bool {
	if name == f.name {
		return true
	}
	if f.typ != "histogram" && f.typ != "summary" {
		return false
	}
	rest, ok := strings.CutPrefix(name, f.name)
	return ok && (rest == "_bucket" || rest == "_sum" || rest == "_count")
}

func sampleName(line string) string {
	if i := strings.IndexAny(line, "{ "); i >= 0 {
		return line[:i]
	}
	return line
}

// escapeHelp escapes a HELP text as the text format requires.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}

// Bucket upper bounds (seconds) for the histograms, chosen so that
// histogram_quantile() is meaningful where each is read.
var (
	// StorageBuckets are for fsyncs, synced commits and publish acks:
	// 100 µs (a fast SSD) to 10 s (a failing disk).
	StorageBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10}
	// RequestBuckets are for HTTP requests, served and sent (webhooks
	// time out at 15 s by default; long polls wait up to 60 s).
	RequestBuckets = []float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 15, 30, 60}
)
