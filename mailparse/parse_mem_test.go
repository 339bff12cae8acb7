package mailparse

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"mime/quotedprintable"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Memory of Parse on large messages. Run:
//
//	go test -run '^$' -bench 'Mem' -benchtime 5x ./mailparse/
//
// peak-MiB is the highest Go heap (live and not yet swept objects, sampled every 20 µs) above
// the heap before the call, with the default GOGC: what a message in flight adds to the
// process. alloc-MiB is everything Parse allocated, retained-MiB what the Message holds.

// memShape is a test message of about 20 MiB.
type memShape struct {
	name string
	raw  func() []byte
}

func memShapes() []memShape {
	return []memShape{
		{"attachment15M", func() []byte { return mimeWithAttachments(1, 15<<20) }},
		{"attachments200", func() []byte { return mimeWithAttachments(200, 75<<10) }},
		{"qpText", func() []byte { return qpTextMessage(20 << 20) }},
	}
}

// payload is n bytes of incompressible-looking binary data.
func payload(n int, seed byte) []byte {
	b := make([]byte, n)
	x := uint32(seed)*2654435761 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// base64Body encodes b in lines of 76 characters, CRLF-terminated.
func base64Body(b []byte) []byte {
	enc := base64.StdEncoding.EncodeToString(b)
	var out bytes.Buffer
	out.Grow(len(enc) + len(enc)/76*2 + 2)
	for len(enc) > 76 {
		out.WriteString(enc[:76])
		out.WriteString("\r\n")
		enc = enc[76:]
	}
	out.WriteString(enc)
	out.WriteString("\r\n")
	return out.Bytes()
}

// mimeWithAttachments is a multipart/mixed message with a short text body and n base64
// attachments of size bytes each.
func mimeWithAttachments(n, size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Sender <sender@example.com>\r\nTo: agent@mail.example.com\r\nSubject: attachments\r\n" +
		"Date: Mon, 2 Jan 2006 15:04:05 -0700\r\nMessage-ID: <mem@example.com>\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n" +
		"--b0undary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attached files.\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--b0undary\r\nContent-Type: application/pdf; name=\"f%d.pdf\"\r\n"+
			"Content-Disposition: attachment; filename=\"f%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i)
		b.Write(base64Body(payload(size, byte(i))))
	}
	b.WriteString("--b0undary--\r\n")
	return b.Bytes()
}

// qpTextMessage is a single text/plain quoted-printable body of about size bytes, mostly
// ASCII prose with some accented letters.
func qpTextMessage(size int) []byte {
	var body bytes.Buffer
	w := quotedprintable.NewWriter(&body)
	line := "Le café de la gare est fermé le dimanche; the quick brown fox jumps over the lazy dog.\r\n"
	for body.Len() < size-200 {
		_, _ = w.Write([]byte(line))
	}
	_ = w.Close()
	return append([]byte("From: sender@example.com\r\nTo: agent@mail.example.com\r\nSubject: long text\r\n"+
		"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n"),
		body.Bytes()...)
}

var heapObjectsSample = []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}

// heapNow returns the heap's object bytes and the bytes allocated since the start.
func heapNow(s []metrics.Sample) (objects, allocs uint64) {
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// memUse is what one call cost.
type memUse struct {
	peak, alloc, retained uint64 // bytes above the heap before the call
	elapsed               time.Duration
}

// measureMem runs fn once after a GC, sampling the heap from another goroutine, and returns its
// peak and allocation above the heap before the call, and what fn's result (kept alive by fn's
// caller through keep) still holds after a GC.
func measureMem(fn func() any) memUse {
	runtime.GC()
	base, alloc0 := heapNow(heapObjectsSample)
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
		for {
			v, _ := heapNow(s)
			peak = max(peak, v)
			select {
			case <-stop:
				return
			default:
				time.Sleep(20 * time.Microsecond)
			}
		}
	}()
	start := time.Now()
	res := fn()
	elapsed := time.Since(start)
	close(stop)
	wg.Wait()
	v, alloc1 := heapNow(heapObjectsSample)
	peak = max(peak, v)
	runtime.GC()
	after, _ := heapNow(heapObjectsSample)
	runtime.KeepAlive(res)
	u := memUse{peak: peak - min(peak, base), alloc: alloc1 - alloc0, elapsed: elapsed}
	if after > base {
		u.retained = after - base
	}
	return u
}

// reportMem runs fn b.N times through measureMem and reports the means.
func reportMem(b *testing.B, size int, fn func() any) {
	b.ReportAllocs()
	var sum memUse
	for range b.N {
		b.StopTimer()
		u := measureMem(func() any {
			b.StartTimer()
			defer b.StopTimer()
			return fn()
		})
		sum.peak += u.peak
		sum.alloc += u.alloc
		sum.retained += u.retained
	}
	n := float64(b.N)
	const mib = 1 << 20
	b.ReportMetric(float64(size)/mib, "msg-MiB")
	b.ReportMetric(float64(sum.peak)/n/mib, "peak-MiB")
	b.ReportMetric(float64(sum.peak)/n/float64(size), "peak/msg")
	b.ReportMetric(float64(sum.alloc)/n/mib, "alloc-MiB")
	b.ReportMetric(float64(sum.retained)/n/mib, "retained-MiB")
}

func BenchmarkParseMem(b *testing.B) {
	for _, s := range memShapes() {
		b.Run(s.name, func(b *testing.B) {
			raw := s.raw()
			reportMem(b, len(raw), func() any {
				m, err := Parse(raw, Limits{})
				if err != nil {
					b.Fatal(err)
				}
				return m
			})
		})
	}
}

// partsMessages are messages of 1000 parts (DefaultMaxParts): a text body and 999 attachments
// of 1 KiB (the figure next to DefaultMaxParts), and 1000 tiny parts.
func partsMessages() []memShape {
	return []memShape{
		{"attachments999x1K", func() []byte { return mimeWithAttachments(999, 1<<10) }},
		{"emptyParts1000", func() []byte {
			var sb strings.Builder
			sb.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
			for i := range 1000 {
				sb.WriteString("--b\r\nContent-Type: application/octet-stream\r\n\r\n" + strconv.Itoa(i) + "\r\n")
			}
			sb.WriteString("--b--\r\n")
			return []byte(sb.String())
		}},
	}
}

// BenchmarkParseMemParts is the memory of a message of 1000 parts.
func BenchmarkParseMemParts(b *testing.B) {
	for _, s := range partsMessages() {
		b.Run(s.name, func(b *testing.B) {
			raw := s.raw()
			reportMem(b, len(raw), func() any {
				m, err := Parse(raw, Limits{})
				if err != nil || m.PartsTruncated {
					b.Fatalf("%v, PartsTruncated %v", err, m.PartsTruncated)
				}
				return m
			})
		})
	}
}

// BenchmarkParseParts is the time of a message of 1000 parts alone (no heap sampling).
func BenchmarkParseParts(b *testing.B) {
	for _, s := range partsMessages() {
		b.Run(s.name, func(b *testing.B) {
			raw := s.raw()
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := Parse(raw, Limits{})
				if err != nil || m.PartsTruncated {
					b.Fatalf("%v, PartsTruncated %v", err, m.PartsTruncated)
				}
			}
		})
	}
}
