package bench

import (
	"math"
	"sync"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Latencies are recorded in microseconds, from 1 µs to 10 minutes, with
// three significant digits (a value is known within 0.1%).
const (
	histMin    = 1
	histMax    = 600_000_000
	histDigits = 3
)

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(histMin, histMax, histDigits) }

// recordClamped records v µs, clamping it into the histogram's range (a
// negative latency means clocks disagree: it is counted as 1 µs, never
// dropped, so counts stay exact).
func recordClamped(h *hdrhistogram.Histogram, v int64) {
	_ = h.RecordValue(min(max(v, histMin), histMax))
}

// recorder is a latency histogram written from many goroutines (nbio
// pollers, generator workers): writers pick a shard, each shard has its own
// lock, so writers rarely meet. It keeps a cumulative histogram and an
// interval one that snapshot empties (the per-second series). A
// histogram is ~170 KB and a snapshot merges every shard, so shards are
// few: 2 to 4.
type recorder struct {
	shards []recShard
}

type recShard struct {
	mu       sync.Mutex
	total    *hdrhistogram.Histogram
	interval *hdrhistogram.Histogram
	_        [40]byte // keep shards on separate cache lines
}

func newRecorder(shards int) *recorder {
	r := &recorder{shards: make([]recShard, max(1, shards))}
	for i := range r.shards {
		r.shards[i].total, r.shards[i].interval = newHist(), newHist()
	}
	return r
}

// record adds a value in µs; shard is any int the caller has at hand (an
// fd, a worker number).
func (r *recorder) record(shard int, us int64) {
	s := &r.shards[uint(shard)%uint(len(r.shards))]
	s.mu.Lock()
	recordClamped(s.total, us)
	recordClamped(s.interval, us)
	s.mu.Unlock()
}

// snapshot returns copies of the cumulative histogram and of the interval
// one, and starts a new interval.
func (r *recorder) snapshot() (total, interval *hdrhistogram.Histogram) {
	total, interval = newHist(), newHist()
	for i := range r.shards {
		s := &r.shards[i]
		s.mu.Lock()
		total.Merge(s.total)
		interval.Merge(s.interval)
		s.interval.Reset()
		s.mu.Unlock()
	}
	return total, interval
}

// LatencySummary is a latency distribution in milliseconds.
type LatencySummary struct {
	Count int64   `json:"count"`
	Min   float64 `json:"min_ms"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
	// Curve is the distribution for the chart: latency at percentiles
	// spaced evenly on a log scale of 1/(1-p), up to the largest value.
	Curve []CurvePoint `json:"curve,omitempty"`
}

// CurvePoint is one point of a latency-by-percentile curve.
type CurvePoint struct {
	Percentile float64 `json:"p"`
	Ms         float64 `json:"ms"`
}

func usToMs(v int64) float64 { return math.Round(float64(v)) / 1000 }

// summarize reduces a µs histogram to a LatencySummary (nil: empty).
func summarize(h *hdrhistogram.Histogram, curve bool) LatencySummary {
	if h == nil || h.TotalCount() == 0 {
		return LatencySummary{}
	}
	s := LatencySummary{
		Count: h.TotalCount(),
		Min:   usToMs(h.Min()),
		Mean:  math.Round(h.Mean()) / 1000,
		P50:   usToMs(h.ValueAtQuantile(50)),
		P90:   usToMs(h.ValueAtQuantile(90)),
		P99:   usToMs(h.ValueAtQuantile(99)),
		P999:  usToMs(h.ValueAtQuantile(99.9)),
		Max:   usToMs(h.Max()),
	}
	if curve {
		// 1/(1-p) from 1 to 10^6 in steps of 10^0.1.
		for k := 0; k <= 60; k++ {
			p := 100 * (1 - math.Pow(10, -float64(k)/10))
			s.Curve = append(s.Curve, CurvePoint{Percentile: math.Round(p*1e5) / 1e5, Ms: usToMs(h.ValueAtQuantile(p))})
			if float64(h.TotalCount())*(1-p/100) < 1 {
				break
			}
		}
		s.Curve = append(s.Curve, CurvePoint{Percentile: 100, Ms: s.Max})
	}
	return s
}
