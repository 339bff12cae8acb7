package store

import (
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

// Pebble's fsync histogram (nanoseconds, bounds every 100 µs) written
// with our bounds in seconds: each bucket counts the samples at or below
// the largest source bound that does not pass it, never more.
func TestWriteRebucketed(t *testing.T) {
	h := &dto.Histogram{
		SampleCount: proto.Uint64(5),
		SampleSum:   proto.Float64(2.5e6),
		Bucket: []*dto.Bucket{
			{UpperBound: proto.Float64(100e3), CumulativeCount: proto.Uint64(1)},
			{UpperBound: proto.Float64(200e3), CumulativeCount: proto.Uint64(2)},
			{UpperBound: proto.Float64(300e3), CumulativeCount: proto.Uint64(3)},
			{UpperBound: proto.Float64(1e6), CumulativeCount: proto.Uint64(4)},
		},
	}
	var b strings.Builder
	writeRebucketed(&b, "x_seconds", h, 1e-9, []float64{0.0001, 0.00025, 0.001})
	want := "x_seconds_bucket{le=\"0.0001\"} 1\nx_seconds_bucket{le=\"0.00025\"} 2\nx_seconds_bucket{le=\"0.001\"} 4\n" +
		"x_seconds_bucket{le=\"+Inf\"} 5\nx_seconds_sum 0.0025\nx_seconds_count 5\n"
	if got := b.String(); !strings.HasSuffix(got, want) {
		t.Errorf("got\n%s\nwant (after metadata)\n%s", got, want)
	}
}
