package ws

import (
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/mailwire/mailwire/delivery"
)

// BenchmarkPushOneConnection pushes event frames to one subscribed
// connection from several goroutines at once (a busy inbox: dispatch
// workers deliver its events concurrently) and reports the socket writes
// per frame: with coalescing, frames that arrive while one is being
// written share the next write. The client reads and discards.
func BenchmarkPushOneConnection(b *testing.B) {
	for _, pushers := range []int{1, 4, 16} {
		b.Run("pushers="+strconv.Itoa(pushers), func(b *testing.B) {
			h, url := startHubConfig(b, Config{MaxPending: 1 << 30}, &gatedBackend{})
			c := dial(b, url)
			subscribed(b, c, `{"type":"subscribe"}`)
			readDone := discardFrames(c)
			frames0, writes0 := h.m.delivered.Get(), h.m.writes.Get()
			cpu0 := processCPU()
			b.SetBytes(int64(len(encodeEventFrame(testEvent, 1, time.Now()))))
			b.ResetTimer()
			var wg sync.WaitGroup
			per := b.N / pushers
			for g := range pushers {
				n := per
				if g == 0 {
					n += b.N % pushers
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						h.Push(testEvent, 1, time.Now(), func(delivery.PushResult) {})
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			// CPU time, not wall time, is the figure to compare on a
			// shared machine (the client's reads are in it too).
			b.ReportMetric(float64((processCPU()-cpu0).Nanoseconds())/float64(b.N), "cpu-ns/frame")
			frames, writes := h.m.delivered.Get()-frames0, h.m.writes.Get()-writes0
			if frames > 0 {
				b.ReportMetric(float64(writes)/float64(frames), "writes/frame")
			}
			_ = c.Close()
			<-readDone
		})
	}
}

// processCPU is this process's user+system CPU time.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// discardFrames reads c until it fails; the channel closes then.
func discardFrames(c *websocket.Conn) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, err := c.NextReader(); err != nil {
				return
			}
		}
	}()
	return done
}
