package engine

import (
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// workPool runs nbhttp's handler jobs (request handlers and WebSocket
// commands) on long-lived goroutines. nbio's own pool starts a goroutine
// per job when it can and lets it exit when its queue is empty, so every
// request paid for growing a fresh stack (copystack was ~7% of the CPU of
// inbound ingest). Workers here are created on demand up to max, keep
// their stacks while busy, and retire after idle.
//
// When all max workers are busy, Go blocks its caller (the poller) until
// one is free: back pressure instead of an unbounded queue.
type workPool struct {
	tasks chan func() // unbuffered: a send succeeds when a worker waits
	max   int32
	n     atomic.Int32
	idle  time.Duration
	log   *slog.Logger

	stop chan struct{}
	wg   sync.WaitGroup
}

func newWorkPool(max int, idle time.Duration, log *slog.Logger) *workPool {
	return &workPool{tasks: make(chan func()), max: int32(max), idle: idle, log: log, stop: make(chan struct{})}
}

// Go runs f on a worker.
func (p *workPool) Go(f func()) {
	select {
	case p.tasks <- f:
		return
	default:
	}
	if p.n.Add(1) <= p.max {
		p.wg.Add(1)
		go p.work(f)
		return
	}
	p.n.Add(-1)
	select {
	case p.tasks <- f:
	case <-p.stop:
	}
}

func (p *workPool) work(f func()) {
	defer p.wg.Done()
	defer p.n.Add(-1)
	p.run(f)
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		select {
		case f := <-p.tasks:
			p.run(f)
			t.Reset(p.idle)
		case <-t.C:
			return
		case <-p.stop:
			return
		}
	}
}

func (p *workPool) run(f func()) {
	defer func() {
		if v := recover(); v != nil {
			p.log.Error("handler panicked", "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	}()
	f()
}

// Stop ends idle workers and waits for busy ones to finish their job.
func (p *workPool) Stop() {
	close(p.stop)
	p.wg.Wait()
}
