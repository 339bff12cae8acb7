package store

import (
	"io"

	"github.com/VictoriaMetrics/metrics"
)

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
	d.dl.m.set.WritePrometheus(w)
}
