package promtext

import (
	"io"
	"strings"
	"testing"
)

func TestWriteGroupsFamiliesAndFillsHelp(t *testing.T) {
	Describe("t_pending", "Pending, by consumer.")
	Describe("t_lat_seconds", "Latency.")
	var b strings.Builder
	Write(&b, func(w io.Writer) {
		io.WriteString(w, "# HELP t_pending\n# TYPE t_pending gauge\nt_pending{c=\"a\"} 1\n"+
			"# HELP t_lat_seconds\n# TYPE t_lat_seconds histogram\nt_lat_seconds_bucket{le=\"+Inf\"} 2\nt_lat_seconds_sum 0.5\nt_lat_seconds_count 2\n"+
			"# HELP t_pending\n# TYPE t_pending gauge\nt_pending{c=\"b\"} 3\n")
	}, func(w io.Writer) {
		io.WriteString(w, "# HELP process_io_read_bytes_total\n# TYPE process_io_read_bytes_total gauge\nprocess_io_read_bytes_total 7\n"+
			"# HELP go_cgo_calls_count\n# TYPE go_cgo_calls_count counter\ngo_cgo_calls_count 0\n")
	})
	want := "# HELP t_pending Pending, by consumer.\n# TYPE t_pending gauge\nt_pending{c=\"a\"} 1\nt_pending{c=\"b\"} 3\n" +
		"# HELP t_lat_seconds Latency.\n# TYPE t_lat_seconds histogram\nt_lat_seconds_bucket{le=\"+Inf\"} 2\nt_lat_seconds_sum 0.5\nt_lat_seconds_count 2\n" +
		"# HELP process_io_read_bytes_total Bytes read by read-like system calls (files, sockets, pipes).\n# TYPE process_io_read_bytes_total counter\nprocess_io_read_bytes_total 7\n"
	if got := b.String(); got != want {
		t.Errorf("got\n%s\nwant\n%s", got, want)
	}
}
