package delivery

import (
	"net/url"
	"sync"

	"github.com/mailwire/mailwire/store"
)

// hookJob is one webhook attempt waiting for a worker.
type hookJob struct {
	lease  *store.Lease
	o      *outcome
	url    string
	secret string
	host   string
}

// hookPool queues webhook attempts for the workers with two bounds: at
// most max jobs queued in all (beyond: submit refuses, policy defer: the
// event stays in the due index), and at most perHost running per host
// (beyond: the job waits in its host's line while the workers serve other
// hosts).
type hookPool struct {
	perHost int
	max     int

	mu struct {
		sync.Mutex
		ready   []*hookJob            // runnable (a host slot is reserved)
		waiting map[string][]*hookJob // host at its cap
		running map[string]int        // running + ready per host
		queued  int                   // ready + waiting + running
		closed  bool
	}
	cond *sync.Cond
}

func newHookPool(max, perHost int) *hookPool {
	p := &hookPool{max: max, perHost: perHost}
	p.mu.waiting = make(map[string][]*hookJob)
	p.mu.running = make(map[string]int)
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *hookPool) submit(j *hookJob) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mu.closed || p.mu.queued >= p.max {
		return false
	}
	p.mu.queued++
	if p.mu.running[j.host] < p.perHost {
		p.mu.running[j.host]++
		p.mu.ready = append(p.mu.ready, j)
		p.cond.Signal()
	} else {
		p.mu.waiting[j.host] = append(p.mu.waiting[j.host], j)
	}
	return true
}

// next blocks for a runnable job; nil once the pool is closed.
func (p *hookPool) next() *hookJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.mu.ready) == 0 && !p.mu.closed {
		p.cond.Wait()
	}
	if p.mu.closed {
		return nil
	}
	j := p.mu.ready[0]
	p.mu.ready[0] = nil
	p.mu.ready = p.mu.ready[1:]
	return j
}

// done frees j's host slot and promotes the next job of that host.
func (p *hookPool) done(j *hookJob) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.queued--
	if w := p.mu.waiting[j.host]; len(w) > 0 {
		p.mu.ready = append(p.mu.ready, w[0])
		w[0] = nil
		if len(w) == 1 {
			delete(p.mu.waiting, j.host)
		} else {
			p.mu.waiting[j.host] = w[1:]
		}
		p.cond.Signal()
		return
	}
	if p.mu.running[j.host]--; p.mu.running[j.host] <= 0 {
		delete(p.mu.running, j.host)
	}
}

// close stops the workers and returns every job not yet running (their
// leases go back: the events keep their due entries). It is called at
// shutdown.
func (p *hookPool) close() []*hookJob {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.mu.closed = true
	left := p.mu.ready
	for _, w := range p.mu.waiting {
		left = append(left, w...)
	}
	p.mu.ready, p.mu.waiting = nil, map[string][]*hookJob{}
	p.cond.Broadcast()
	return left
}

func (p *hookPool) depth() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.mu.queued
}

func hostOf(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return raw
	}
	return u.Host
}

// hookLoop is one webhook worker.
func (d *Dispatcher) hookLoop() {
	for {
		j := d.pool.next()
		if j == nil {
			return
		}
		d.runHook(j)
		d.pool.done(j)
	}
}

// runHook signs and sends one attempt and reports its outcome.
func (d *Dispatcher) runHook(j *hookJob) {
	now := d.now()
	o := j.o
	o.startMs = now.UnixMilli()
	o.channel = store.ChannelWebhook
	ev := &j.lease.Event
	body := ev.AppendPayload(make([]byte, 0, ev.PayloadLen()), o.n, now)
	res := d.send(j.url, j.secret, ev.ID, now, body)
	o.ok = res.Err == nil
	o.status = res.Status
	if res.Err != nil {
		o.errText = res.Err.Error()
	}
	o.duration = res.Duration
	d.m.webhookLatency.Update(res.Duration.Seconds())
	if !o.ok {
		d.ops.webhookFailed(j.host, ev, o)
	}
	d.record(j.lease, o)
}
