package limits

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/mailwire/mailwire/internal/promtext"
)

// DiskThreshold is --min-free-disk: an absolute size, or a percentage of
// the filesystem's size.
type DiskThreshold struct {
	Bytes   int64
	Percent float64 // used when > 0
}

// DefaultDiskThreshold: 1 GiB, or 5 % of the filesystem when that is less
// (a small volume would otherwise never take mail).
var DefaultDiskThreshold = DiskThreshold{Bytes: 1 << 30, Percent: 5}

// ParseDiskThreshold parses "1GiB", "512MiB", "5%".
func ParseDiskThreshold(s string, parseSize func(string) (int, error)) (DiskThreshold, error) {
	s = strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(s, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || f < 0 || f >= 100 {
			return DiskThreshold{}, fmt.Errorf("%q is not a percentage from 0 to 100", s)
		}
		return DiskThreshold{Percent: f}, nil
	}
	n, err := parseSize(s)
	if err != nil {
		return DiskThreshold{}, err
	}
	return DiskThreshold{Bytes: int64(n)}, nil
}

func (t DiskThreshold) String() string {
	switch {
	case t.Bytes < 0 && t.Percent <= 0:
		return "none"
	case t.Bytes > 0 && t.Percent > 0:
		return fmt.Sprintf("%d bytes or %g%% (the smaller)", t.Bytes, t.Percent)
	case t.Percent > 0:
		return fmt.Sprintf("%g%%", t.Percent)
	}
	return strconv.FormatInt(t.Bytes, 10) + " bytes"
}

// bytesFor is the threshold for a filesystem of total bytes (a negative
// Bytes without Percent means none: "--min-free-disk 0").
func (t DiskThreshold) bytesFor(total uint64) uint64 {
	pct := uint64(float64(total) * t.Percent / 100)
	switch {
	case t.Bytes < 0 && t.Percent <= 0:
		return 0
	case t.Bytes > 0 && t.Percent > 0:
		return min(uint64(t.Bytes), pct)
	case t.Percent > 0:
		return pct
	}
	return uint64(t.Bytes)
}

// Disk watches the free space under a directory. Below the threshold,
// ingest is refused (452 4.3.1 / 507) while everything else keeps
// working; it resumes by itself when space comes back.
type Disk struct {
	dir       string
	threshold DiskThreshold
	every     time.Duration
	statfs    func(string, *syscall.Statfs_t) error
	log       *slog.Logger

	free, total, need atomic.Uint64
	low               atomic.Bool
	refused           *metrics.Counter
	rl                RateLog

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

// diskCheckEvery is how often the free space is read (a statfs costs
// about a microsecond).
const diskCheckEvery = time.Second

// NewDisk reads the free space under dir once (an error: the directory
// cannot be examined) and returns a watcher; Start keeps it current.
func NewDisk(dir string, t DiskThreshold, set *metrics.Set, log *slog.Logger) (*Disk, error) {
	d := &Disk{dir: dir, threshold: t, every: diskCheckEvery, statfs: syscall.Statfs, log: log.With("component", "limits"),
		stop: make(chan struct{})}
	d.rl = RateLog{Log: d.log, Every: 5 * time.Second}
	if err := d.Check(); err != nil {
		return nil, err
	}
	set.NewGauge(promtext.Describe("mailwire_disk_free_bytes", "Free bytes on the filesystem of --data-dir."), func() float64 { return float64(d.free.Load()) })
	set.NewGauge(promtext.Describe("mailwire_disk_min_free_bytes", "Free space below which ingest is refused (--min-free-disk), in bytes."), func() float64 { return float64(d.need.Load()) })
	set.NewGauge(promtext.Describe("mailwire_disk_low", "1 while free disk is below --min-free-disk and ingest is refused."), func() float64 {
		if d.low.Load() {
			return 1
		}
		return 0
	})
	d.refused = set.NewCounter(promtext.Describe("mailwire_disk_refused_total", "Inbound messages refused (507 / 452) for lack of free disk."))
	return d, nil
}

// Check reads the free space now.
func (d *Disk) Check() error {
	var st syscall.Statfs_t
	if err := d.statfs(d.dir, &st); err != nil {
		return fmt.Errorf("cannot read the free space of %s: %w", d.dir, err)
	}
	free, total := st.Bavail*uint64(st.Bsize), st.Blocks*uint64(st.Bsize)
	need := d.threshold.bytesFor(total)
	d.free.Store(free)
	d.total.Store(total)
	d.need.Store(need)
	low := free < need
	if was := d.low.Swap(low); was != low {
		if low {
			d.log.Error("free disk below --min-free-disk: ingest refused (452/507) until space comes back",
				"dir", d.dir, "free_bytes", free, "min_free_bytes", need)
		} else {
			d.log.Info("free disk back above --min-free-disk: ingest resumed", "dir", d.dir, "free_bytes", free)
		}
	}
	return nil
}

// Start re-reads the free space every second until Stop.
func (d *Disk) Start() {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		t := time.NewTicker(d.every)
		defer t.Stop()
		for {
			select {
			case <-d.stop:
				return
			case <-t.C:
				if err := d.Check(); err != nil {
					d.rl.Warn("cannot check the free disk", "error", err)
				}
			}
		}
	}()
}

// Stop ends the watcher (idempotent; nil-safe).
func (d *Disk) Stop() {
	if d == nil {
		return
	}
	d.once.Do(func() { close(d.stop) })
	d.wg.Wait()
}

// Free is the free space last read, in bytes.
func (d *Disk) Free() uint64 { return d.free.Load() }

// Low reports whether free space is below the threshold (never for a nil
// Disk: no data directory on the OS's filesystem to watch).
func (d *Disk) Low() bool { return d != nil && d.low.Load() }

// Admit reports whether ingest may go on, counting and logging a refusal
// (via names the edge).
func (d *Disk) Admit(via string) bool {
	if !d.Low() {
		return true
	}
	d.refused.Inc()
	d.rl.Warn("ingest refused: free disk below --min-free-disk", "via", via, "free_bytes", d.free.Load(), "min_free_bytes", d.need.Load())
	return false
}

// Status describes the state for /readyz ("" when fine).
func (d *Disk) Status() string {
	if !d.Low() {
		return ""
	}
	return fmt.Sprintf("free disk %d bytes below --min-free-disk %d bytes: ingest refused", d.free.Load(), d.need.Load())
}
