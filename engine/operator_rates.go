package engine

import (
	"sync"
	"time"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/store"
)

// Rates for GET /admin/v1/stats are differences of delivery counters over
// a window. There is no sampling goroutine: each stats request records a
// reading (at most one per rateSampleEvery) and computes its rates against
// the newest reading at least a window old, or the oldest one kept when
// the server has not been asked for that long. A fresh server's first
// request has no rates yet.
const (
	// rateSampleEvery is the closest two kept readings may be.
	rateSampleEvery = time.Second
	// rateWindowDefault is the window when ?window is absent.
	rateWindowDefault = time.Minute
	// rateWindowMax is the longest window (and how far back readings are
	// kept: at most rateWindowMax/rateSampleEvery+1 of them).
	rateWindowMax = 10 * time.Minute
	// rateWindowMin is the shortest window a request may ask for.
	rateWindowMin = 2 * time.Second
)

// rateChannels are the attempt channels, in the order of counterSet's
// attempts.
var rateChannels = [3]string{store.ChannelWebSocket, store.ChannelWebhook, store.ChannelNone}

// counterSet is one reading of the counters rates are computed from.
type counterSet struct {
	stored, failed uint64
	attempts       [len(rateChannels)][2]uint64 // [channel][0 ok, 1 failed]
}

func readCounters(st delivery.Stats) counterSet {
	c := counterSet{stored: st.EventsStored, failed: st.EventsFailed}
	for i, ch := range rateChannels {
		a := st.Attempts[ch]
		c.attempts[i] = [2]uint64{a.OK, a.Failed}
	}
	return c
}

type rateSample struct {
	at time.Time
	c  counterSet
}

// rateWindow holds the recent readings, oldest first. The zero value is
// ready for use.
type rateWindow struct {
	mu      sync.Mutex
	samples []rateSample
}

// observe records cur taken at now and returns the reading to compute
// rates over window against; ok is false when there is none yet.
func (w *rateWindow) observe(now time.Time, cur counterSet, window time.Duration) (base rateSample, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Keep the newest reading older than the longest window and every
	// later one.
	drop := 0
	for drop+1 < len(w.samples) && !w.samples[drop+1].at.After(now.Add(-rateWindowMax)) {
		drop++
	}
	w.samples = append(w.samples[:0], w.samples[drop:]...)
	for i := len(w.samples) - 1; i >= 0; i-- {
		if !w.samples[i].at.After(now.Add(-window)) {
			base, ok = w.samples[i], true
			break
		}
	}
	if !ok && len(w.samples) > 0 {
		base, ok = w.samples[0], true
	}
	if n := len(w.samples); n == 0 || now.Sub(w.samples[n-1].at) >= rateSampleEvery {
		w.samples = append(w.samples, rateSample{at: now, c: cur})
	}
	return base, ok
}

// rates are per-second rates over a window (statsView.Rates).
type rates struct {
	// WindowSeconds is the window the rates were computed over (shorter
	// than asked while the server has not been observed that long).
	WindowSeconds float64 `json:"windowSeconds"`
	EventsStored  float64 `json:"eventsStored"`
	EventsFailed  float64 `json:"eventsFailed"`
	// Deliveries are successful attempts (any channel); FailedAttempts
	// the others.
	Deliveries     float64                       `json:"deliveries"`
	FailedAttempts float64                       `json:"failedAttempts"`
	Attempts       map[string]attemptRatesByKind `json:"attempts"`
}

type attemptRatesByKind struct {
	OK     float64 `json:"ok"`
	Failed float64 `json:"failed"`
}

// computeRates returns the rates from base to cur at now; nil when the
// two readings are too close to say anything.
func computeRates(base rateSample, cur counterSet, now time.Time) *rates {
	secs := now.Sub(base.at).Seconds()
	if secs < rateSampleEvery.Seconds()/2 {
		return nil
	}
	per := func(a, b uint64) float64 { return float64(a-b) / secs }
	r := &rates{
		WindowSeconds: secs,
		EventsStored:  per(cur.stored, base.c.stored),
		EventsFailed:  per(cur.failed, base.c.failed),
		Attempts:      make(map[string]attemptRatesByKind, len(rateChannels)),
	}
	for i, ch := range rateChannels {
		a := attemptRatesByKind{OK: per(cur.attempts[i][0], base.c.attempts[i][0]), Failed: per(cur.attempts[i][1], base.c.attempts[i][1])}
		r.Attempts[ch] = a
		r.Deliveries += a.OK
		r.FailedAttempts += a.Failed
	}
	return r
}
