package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/lesismal/nbio/logging"
)

// A run's subscribers live in one or more client processes. The harness
// process is one (a local Pool); with --client-procs P it starts P worker
// processes instead (this executable, with WorkerEnv set), each holding
// its share of the subscribers in its own Pool and its own 20,000
// descriptors, and drives them over their stdin/stdout: one JSON request
// line, one JSON reply line.

// WorkerEnv marks a process started as a client worker.
const WorkerEnv = "MAILWIRE_BENCH_WORKER"

// poolHandle is a Pool here or in a worker process.
type poolHandle interface {
	Stats() (PoolStats, error)
	SetWindow(from, to int64) error
	StartBehaviour(Behaviour) error
	StopBehaviour() error
	Close() error
	PID() int
}

type localPool struct{ p *Pool }

func (l localPool) Stats() (PoolStats, error)        { return l.p.Stats(), nil }
func (l localPool) SetWindow(from, to int64) error   { l.p.SetWindow(from, to); return nil }
func (l localPool) StartBehaviour(b Behaviour) error { l.p.StartBehaviour(b); return nil }
func (l localPool) StopBehaviour() error             { l.p.StopBehaviour(); return nil }
func (l localPool) Close() error                     { l.p.Close(); return nil }
func (l localPool) PID() int                         { return os.Getpid() }
func startLocal(cfg PoolConfig, specs []ClientSpec) (poolHandle, error) {
	p, err := NewPool(cfg)
	if err != nil {
		return nil, err
	}
	p.Add(specs)
	return localPool{p}, nil
}

// request is one line to a worker.
type request struct {
	Op      string       `json:"op"` // start, stats, window, behave, stop-behaviour, close
	Pool    *PoolConfig  `json:"pool,omitempty"`
	Clients []ClientSpec `json:"clients,omitempty"`
	From    int64        `json:"from,omitempty"`
	To      int64        `json:"to,omitempty"`
	Behave  *Behaviour   `json:"behave,omitempty"`
}

// reply is one line from a worker.
type reply struct {
	Error string     `json:"error,omitempty"`
	Stats *wireStats `json:"stats,omitempty"`
}

// wireStats is PoolStats with its histograms encoded (HdrHistogram V2,
// compressed, base64).
type wireStats struct {
	PoolStats
	Latency         string `json:"latency,omitempty"`
	LatencyInterval string `json:"latency_interval,omitempty"`
	LatencySent     string `json:"latency_sent,omitempty"`
	Connect         string `json:"connect,omitempty"`
}

func encodeHist(h *hdrhistogram.Histogram) string {
	if h == nil {
		return ""
	}
	b, err := h.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return ""
	}
	return string(b)
}

func decodeHist(s string) *hdrhistogram.Histogram {
	if s == "" {
		return nil
	}
	h, err := hdrhistogram.Decode([]byte(s))
	if err != nil {
		return nil
	}
	return h
}

func toWire(st PoolStats) *wireStats {
	return &wireStats{PoolStats: st, Latency: encodeHist(st.Latency), LatencyInterval: encodeHist(st.LatencyInterval),
		LatencySent: encodeHist(st.LatencySent), Connect: encodeHist(st.Connect)}
}

func (w *wireStats) stats() PoolStats {
	st := w.PoolStats
	st.Latency, st.LatencyInterval, st.LatencySent, st.Connect = decodeHist(w.Latency), decodeHist(w.LatencyInterval), decodeHist(w.LatencySent), decodeHist(w.Connect)
	return st
}

// WorkerMain serves one coordinator on in/out until it sends "close" or
// in ends. The command's `worker` subcommand and the tests' TestMain call
// it in processes started with WorkerEnv.
func WorkerMain(in io.Reader, out io.Writer) error {
	// out carries the replies: nbio must not log to stdout.
	logging.Output = os.Stderr
	logging.SetLevel(logging.LevelError)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 1<<20), 1<<30)
	enc := json.NewEncoder(out)
	var p *Pool
	defer func() {
		if p != nil {
			p.Close()
		}
	}()
	for sc.Scan() {
		var req request
		var rep reply
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			return fmt.Errorf("worker: bad request: %w", err)
		}
		switch {
		case req.Op == "start" && p == nil && req.Pool != nil:
			var err error
			if p, err = NewPool(*req.Pool); err != nil {
				rep.Error = err.Error()
			} else {
				p.Add(req.Clients)
			}
		case p == nil:
			rep.Error = "worker: no pool (start first)"
		case req.Op == "stats":
			rep.Stats = toWire(p.Stats())
		case req.Op == "window":
			p.SetWindow(req.From, req.To)
		case req.Op == "behave" && req.Behave != nil:
			p.StartBehaviour(*req.Behave)
		case req.Op == "stop-behaviour":
			p.StopBehaviour()
		case req.Op == "close":
			p.Close()
			rep.Stats = toWire(p.Stats())
			p = nil
			return enc.Encode(rep)
		default:
			rep.Error = "worker: unknown request " + req.Op
		}
		if err := enc.Encode(rep); err != nil {
			return err
		}
	}
	return sc.Err()
}

// remotePool is a worker process.
type remotePool struct {
	cmd *exec.Cmd
	mu  sync.Mutex
	in  io.WriteCloser
	out *bufio.Scanner
}

// startRemote starts a worker process (this executable) holding specs.
func startRemote(cfg PoolConfig, specs []ClientSpec) (poolHandle, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("cannot find this executable to start a worker: %w", err)
	}
	cmd := exec.Command(exe, "worker")
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	outR, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("cannot start a worker: %w", err)
	}
	r := &remotePool{cmd: cmd, in: in, out: bufio.NewScanner(outR)}
	r.out.Buffer(make([]byte, 1<<20), 64<<20)
	if _, err := r.call(request{Op: "start", Pool: &cfg, Clients: specs}); err != nil {
		_ = r.kill()
		return nil, err
	}
	return r, nil
}

func (r *remotePool) call(req request) (*reply, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.in == nil {
		return nil, errors.New("worker closed")
	}
	b, _ := json.Marshal(req)
	if _, err := r.in.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("worker %d: %w", r.cmd.Process.Pid, err)
	}
	if !r.out.Scan() {
		return nil, fmt.Errorf("worker %d ended: %v", r.cmd.Process.Pid, r.out.Err())
	}
	var rep reply
	if err := json.Unmarshal(r.out.Bytes(), &rep); err != nil {
		return nil, fmt.Errorf("worker %d: bad reply: %w", r.cmd.Process.Pid, err)
	}
	if rep.Error != "" {
		return nil, errors.New(rep.Error)
	}
	return &rep, nil
}

func (r *remotePool) Stats() (PoolStats, error) {
	rep, err := r.call(request{Op: "stats"})
	if err != nil || rep.Stats == nil {
		return PoolStats{}, err
	}
	return rep.Stats.stats(), nil
}

func (r *remotePool) SetWindow(from, to int64) error {
	_, err := r.call(request{Op: "window", From: from, To: to})
	return err
}

func (r *remotePool) StartBehaviour(b Behaviour) error {
	_, err := r.call(request{Op: "behave", Behave: &b})
	return err
}

func (r *remotePool) StopBehaviour() error {
	_, err := r.call(request{Op: "stop-behaviour"})
	return err
}

func (r *remotePool) PID() int { return r.cmd.Process.Pid }

// Close closes the worker's pool and waits for the process to exit.
func (r *remotePool) Close() error {
	_, err := r.call(request{Op: "close"})
	r.mu.Lock()
	if r.in != nil {
		_ = r.in.Close()
		r.in = nil
	}
	r.mu.Unlock()
	werr := make(chan error, 1)
	go func() { werr <- r.cmd.Wait() }()
	select {
	case e := <-werr:
		if err == nil {
			err = e
		}
	case <-time.After(30 * time.Second):
		_ = r.cmd.Process.Kill()
		<-werr
		err = errors.New("worker did not exit")
	}
	return err
}

func (r *remotePool) kill() error {
	_ = r.cmd.Process.Kill()
	return r.cmd.Wait()
}

// pools is a run's client side: one or more pool handles.
type pools []poolHandle

// startPools spreads specs over procs worker processes, or holds them
// here when procs is 0.
func startPools(cfg PoolConfig, specs []ClientSpec, procs int) (pools, error) {
	if procs <= 0 {
		h, err := startLocal(cfg, specs)
		if err != nil {
			return nil, err
		}
		return pools{h}, nil
	}
	var ps pools
	cfg.Rate /= float64(procs) // --conn-rate is for the whole client side
	for i := 0; i < procs; i++ {
		lo, hi := i*len(specs)/procs, (i+1)*len(specs)/procs
		h, err := startRemote(cfg, specs[lo:hi])
		if err != nil {
			ps.Close()
			return nil, err
		}
		ps = append(ps, h)
	}
	return ps, nil
}

// Stats merges every pool's stats.
func (ps pools) Stats() (PoolStats, error) {
	var all PoolStats
	for _, h := range ps {
		st, err := h.Stats()
		if err != nil {
			return all, err
		}
		all.merge(&st)
	}
	return all, nil
}

// Wait blocks until every connect attempt has an outcome (or ctx ends).
func (ps pools) Wait(ctx context.Context) (PoolStats, error) {
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		st, err := ps.Stats()
		if err != nil || st.Settled >= st.Queued {
			return st, err
		}
		select {
		case <-ctx.Done():
			return st, ctx.Err()
		case <-t.C:
		}
	}
}

func (ps pools) each(f func(poolHandle) error) error {
	var errs []error
	for _, h := range ps {
		errs = append(errs, f(h))
	}
	return errors.Join(errs...)
}

func (ps pools) SetWindow(from, to int64) error {
	return ps.each(func(h poolHandle) error { return h.SetWindow(from, to) })
}

func (ps pools) StartBehaviour(b Behaviour) error {
	return ps.each(func(h poolHandle) error { return h.StartBehaviour(b) })
}

func (ps pools) StopBehaviour() error {
	return ps.each(func(h poolHandle) error { return h.StopBehaviour() })
}

func (ps pools) Close() error {
	return ps.each(func(h poolHandle) error { return h.Close() })
}

func (ps pools) PIDs() []int {
	var out []int
	seen := map[int]bool{}
	for _, h := range ps {
		if pid := h.PID(); !seen[pid] {
			seen[pid] = true
			out = append(out, pid)
		}
	}
	return out
}
