package smtpd

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkSMTPIngest measures messages accepted per second over SMTP:
// each parallel goroutine keeps one session and loops RSET, MAIL, RCPT,
// DATA with a small message, waiting for the 250 (each message durable:
// Pebble's synced commit, shared between concurrent sessions). The real
// dispatcher makes its first attempt (no WebSocket, no webhook: channel
// "none") and records it with a synced commit of its own, as in
// production.
func BenchmarkSMTPIngest(b *testing.B) {
	e := newEnv(b, envOptions{cfg: func(c *Config) { c.MaxConnsPerIP = 1000 }})
	body := strings.Repeat("A short line of a small message body.\r\n", 20)
	var seq atomic.Int64
	b.SetParallelism(8) // 8 × GOMAXPROCS sessions
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		c := hello(b, e.srv.Addr())
		defer c.close()
		for pb.Next() {
			n := seq.Add(1)
			c.send("RSET", "MAIL FROM:<bench@example.com>", "RCPT TO:<agent@localhost>", "DATA")
			for _, want := range []string{"250 ", "250 ", "250 ", "354 "} {
				c.expect(want)
			}
			c.write(dotStuff(message(fmt.Sprintf("bench %d", n), body, fmt.Sprintf("Message-ID: <bench-%d@example.com>", n))))
			c.expect("250 ")
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if got := e.metric("mailwire_smtp_messages_accepted_total"); got != float64(b.N) {
		b.Fatalf("accepted %v, want %d", got, b.N)
	}
}
