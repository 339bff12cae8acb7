package store

import (
	"fmt"
	"io"

	"github.com/VictoriaMetrics/metrics"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailwire/mailwire/internal/promtext"
)

func init() {
	d := promtext.Describe
	d("mailwire_pebble_disk_usage_bytes", "Bytes the Pebble database takes on disk.")
	d("mailwire_pebble_wal_bytes", "Live bytes in Pebble's write-ahead log.")
	d("mailwire_pebble_memtable_bytes", "Bytes of Pebble's memtables.")
	d("mailwire_pebble_read_amplification", "Pebble's read amplification (sublevels a read may visit).")
	d("mailwire_pebble_compaction_debt_bytes", "Bytes Pebble estimates it must compact to reach a stable shape.")
	d("mailwire_pebble_flushes_total", "Memtable flushes.")
	d("mailwire_pebble_compactions_total", "Compactions.")
	d("mailwire_pebble_block_cache_hits_total", "Block cache hits.")
	d("mailwire_pebble_block_cache_misses_total", "Block cache misses.")
	d("mailwire_pebble_wal_fsync_seconds", "Latency of the write-ahead log's fsyncs: every acknowledged message waits for one.")
}

// WriteMetrics implements Store: Pebble's figures, read at scrape time,
// and the delivery side's counters (docs/OPERATIONS.md lists them).
func (d *DB) WriteMetrics(w io.Writer) {
	m := d.pdb.Metrics()
	metrics.WriteGaugeUint64(w, "mailwire_pebble_disk_usage_bytes", m.DiskSpaceUsage())
	metrics.WriteGaugeUint64(w, "mailwire_pebble_wal_bytes", m.WAL.Size)
	metrics.WriteGaugeUint64(w, "mailwire_pebble_memtable_bytes", m.MemTable.Size)
	metrics.WriteGaugeUint64(w, "mailwire_pebble_read_amplification", uint64(m.ReadAmp()))
	metrics.WriteGaugeUint64(w, "mailwire_pebble_compaction_debt_bytes", m.Compact.EstimatedDebt)
	metrics.WriteCounterUint64(w, "mailwire_pebble_flushes_total", uint64(m.Flush.Count))
	metrics.WriteCounterUint64(w, "mailwire_pebble_compactions_total", uint64(m.Compact.Count))
	metrics.WriteCounterUint64(w, "mailwire_pebble_block_cache_hits_total", uint64(m.BlockCache.Hits))
	metrics.WriteCounterUint64(w, "mailwire_pebble_block_cache_misses_total", uint64(m.BlockCache.Misses))
	if h := m.LogWriter.FsyncLatency; h != nil {
		var pm dto.Metric
		if h.Write(&pm) == nil && pm.Histogram != nil {
			writeRebucketed(w, "mailwire_pebble_wal_fsync_seconds", pm.Histogram, 1e-9, promtext.StorageBuckets)
		}
	}
	d.dl.m.set.WritePrometheus(w)
}

// writeRebucketed writes a client_golang histogram (Pebble's) as a
// Prometheus histogram with the bounds given, in seconds (scale turns its
// unit into seconds). Pebble's own 100 bounds are too many series; each
// of ours counts the samples at or below the largest of Pebble's bounds
// that does not exceed it, so a bucket never over-counts (Pebble's bounds
// are multiples of 100 µs up to 5 ms, which covers the usual fsync range
// exactly).
func writeRebucketed(w io.Writer, name string, h *dto.Histogram, scale float64, bounds []float64) {
	metrics.WriteMetadataIfNeeded(w, name, "histogram")
	src := h.GetBucket()
	i := 0
	var cum uint64
	for _, ub := range bounds {
		for i < len(src) && src[i].GetUpperBound()*scale <= ub*(1+1e-9) {
			cum = src[i].GetCumulativeCount()
			i++
		}
		fmt.Fprintf(w, "%s_bucket{le=\"%v\"} %d\n", name, ub, cum)
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n", name, h.GetSampleCount())
	fmt.Fprintf(w, "%s_sum %g\n", name, h.GetSampleSum()*scale)
	fmt.Fprintf(w, "%s_count %d\n", name, h.GetSampleCount())
}
