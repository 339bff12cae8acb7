package bench

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Sample is one reading of the server's resources. Process figures come
// from /proc/<pid> of the server process, Go figures from its /metrics,
// kernel socket figures from /proc/net/sockstat and /proc/slabinfo (the
// whole machine: on loopback both ends of every connection live here).
type Sample struct {
	At            time.Time `json:"at"`
	RSS           int64     `json:"rss_bytes"`            // VmRSS of the server process
	CPUSeconds    float64   `json:"cpu_seconds"`          // utime+stime of the server process
	HeapInuse     int64     `json:"heap_inuse_bytes"`     // go_memstats_heap_inuse_bytes
	HeapAlloc     int64     `json:"heap_alloc_bytes"`     // go_memstats_heap_alloc_bytes
	StackInuse    int64     `json:"stack_inuse_bytes"`    // go_memstats_stack_inuse_bytes
	Goroutines    int64     `json:"goroutines"`           // go_goroutines
	GCCount       int64     `json:"gc_count"`             // go_gc_duration_seconds_count
	WSConnections int64     `json:"ws_connections"`       // mailwire_ws_connections
	SockMem       int64     `json:"tcp_mem_bytes"`        // sockstat "TCP: ... mem" pages × page size
	TCPInuse      int64     `json:"tcp_inuse"`            // sockstat TCP inuse (sockets, both ends)
	TCPTimeWait   int64     `json:"tcp_tw"`               // sockstat TCP tw
	SlabSock      int64     `json:"slab_socket_bytes"`    // slabinfo: caches an idle socket lives in
	ClientRSS     int64     `json:"client_rss_bytes"`     // VmRSS of the client processes
	ClientCPU     float64   `json:"client_cpu_seconds"`   // utime+stime of the client processes
	MachineBusy   float64   `json:"machine_busy_seconds"` // /proc/stat: CPU time of every process (all cores)
	MetricsError  string    `json:"metrics_error,omitempty"`
	Deliveries    int64     `json:"ws_deliveries"`        // mailwire_ws_deliveries_total
	EventsStored  int64     `json:"events_stored"`        // mailwire_events_stored_total (when exposed)
	WebhookOK     int64     `json:"webhook_ok,omitempty"` // mailwire_delivery_attempts_total{channel="webhook",outcome="ok"}
}

// Probe samples a server. PID 0 means the server's process is unknown:
// only /metrics and the kernel figures are read.
type Probe struct {
	API        *API
	PID        int
	ClientPIDs []int // processes holding the client side (this one, workers)
}

// slabCaches are the slab caches an idle TCP socket occupies: the socket
// (TCP), its inode, its file and dentry, and its epoll registration.
var slabCaches = map[string]bool{
	"TCP": true, "sock_inode_cache": true, "filp": true, "dentry": true,
	"eventpoll_epi": true, "eventpoll_pwq": true,
}

// Sample reads every figure it can; a figure that cannot be read stays 0.
func (p *Probe) Sample() Sample {
	s := Sample{At: time.Now()}
	if p.PID > 0 {
		s.RSS = procRSS(p.PID)
		s.CPUSeconds = procCPU(p.PID)
	}
	for _, pid := range p.ClientPIDs {
		s.ClientRSS += procRSS(pid)
		s.ClientCPU += procCPU(pid)
	}
	if p.API != nil {
		m, err := p.API.Metrics()
		if err != nil {
			s.MetricsError = err.Error()
		}
		s.HeapInuse = int64(m["go_memstats_heap_inuse_bytes"])
		s.HeapAlloc = int64(m["go_memstats_heap_alloc_bytes"])
		s.StackInuse = int64(m["go_memstats_stack_inuse_bytes"])
		s.Goroutines = int64(m["go_goroutines"])
		s.GCCount = int64(m["go_gc_duration_seconds_count"])
		s.WSConnections = int64(m["mailwire_ws_connections"])
		s.Deliveries = int64(m["mailwire_ws_deliveries_total"])
		s.EventsStored = int64(m["mailwire_events_stored_total"])
		s.WebhookOK = int64(m[`mailwire_delivery_attempts_total{channel="webhook",outcome="ok"}`])
	}
	s.MachineBusy = machineBusy()
	s.SockMem, s.TCPInuse, s.TCPTimeWait = sockstat()
	s.SlabSock = slabBytes()
	return s
}

// procRSS is VmRSS of pid in bytes.
func procRSS(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) >= 1 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n << 10 // kB
			}
		}
	}
	return 0
}

// clockTicks is USER_HZ, 100 on every Linux we run on.
const clockTicks = 100

// procCPU is utime+stime of pid in seconds.
func procCPU(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name may hold spaces: fields count from the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / clockTicks
}

// machineBusy is the CPU time spent by everything on the machine (the
// first line of /proc/stat: all but idle and iowait), in seconds.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, v := range f[1:] {
		n, _ := strconv.ParseFloat(v, 64)
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy / clockTicks
}

// sockstat returns TCP buffer memory (bytes), sockets in use and in
// TIME_WAIT.
func sockstat() (mem, inuse, tw int64) {
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(b), "\n") {
		rest, ok := strings.CutPrefix(line, "TCP:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			n, _ := strconv.ParseInt(f[i+1], 10, 64)
			switch f[i] {
			case "mem":
				mem = n * int64(os.Getpagesize())
			case "inuse":
				inuse = n
			case "tw":
				tw = n
			}
		}
	}
	return
}

// slabBytes sums active objects × object size of slabCaches (0 when
// /proc/slabinfo is not readable).
func slabBytes() int64 {
	f, err := os.Open("/proc/slabinfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fl := strings.Fields(sc.Text())
		if len(fl) < 4 || !slabCaches[fl[0]] {
			continue
		}
		active, _ := strconv.ParseInt(fl[1], 10, 64)
		size, _ := strconv.ParseInt(fl[3], 10, 64)
		total += active * size
	}
	return total
}

// Machine describes where a run happened.
type Machine struct {
	Host      string `json:"host"`
	CPU       string `json:"cpu"`
	Cores     int    `json:"cores"`
	MemoryGiB int64  `json:"memory_gib"`
	Kernel    string `json:"kernel"`
	Go        string `json:"go"`
	FDLimit   uint64 `json:"fd_limit"`
	// LoadAvg is /proc/loadavg's 1, 5 and 15 minute load when the run
	// started: other work on the machine shares its cores and its disk.
	LoadAvg string `json:"load_avg"`
}

func machineInfo() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	m.Host, _ = os.Hostname()
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				f := strings.Fields(v)
				if len(f) > 0 {
					kb, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryGiB = (kb + 1<<19) >> 20
				}
			}
		}
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		if f := strings.Fields(string(b)); len(f) >= 3 {
			m.LoadAvg = strings.Join(f[:3], " ")
		}
	}
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil {
		m.FDLimit = rl.Cur
	}
	return m
}

// commit names the source tree: the short commit, "-dirty" when the
// tree has changes (read-only git commands; "unknown" without git).
func commit() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.CommandContext(ctx, "git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "-dirty"
	}
	return c
}

// fsyncLatency measures n fsyncs of a small append in dir (the
// filesystem of the server's data directory): every durable write waits
// for at least one, so the run's latency figures are read against it.
func fsyncLatency(dir string, n int) (p50, p99, max time.Duration, err error) {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0, 0, 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 512)
	d := make([]time.Duration, 0, n)
	for i := 0; i < n; i++ {
		if _, err := f.Write(buf); err != nil {
			return 0, 0, 0, err
		}
		t := time.Now()
		if err := f.Sync(); err != nil {
			return 0, 0, 0, err
		}
		d = append(d, time.Since(t))
	}
	slices.Sort(d)
	return d[len(d)/2], d[len(d)*99/100], d[len(d)-1], nil
}
