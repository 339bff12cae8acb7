package store

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"mime/quotedprintable"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/mailparse"
)

// Memory of StoreInbound on large messages, on a real Pebble in a temp dir. Run:
//
//	go test -run '^$' -bench 'Mem' -benchtime 5x ./store/
//
// peak-MiB is the highest Go heap (live and not yet swept objects, sampled every 20 µs) above
// the heap before the call, while StoreInbound runs, with the default GOGC; the message, its raw
// bytes and its parsed form exist before (as in ingest) and are not counted. alloc-MiB is what
// the process allocated during the call (Pebble's goroutines included), retained-MiB what is
// still held after it returned and a GC (Pebble keeps a batch above its large-batch threshold
// as a memtable until it is flushed, and the flush starts at once). peak+flush-MiB is the peak
// until Pebble's flush and compactions are done with the message, flush-alloc-MiB what was
// allocated from the return until then (the flush's and compactions' buffers). Each message goes into a
// fresh database. The "busy" variants store the message while 16 writers store small messages,
// so that the group committer has batches to merge it with. The "alone-inplace" variants store it
// as ingest does for one recipient: parsed with mailparse.ParseDeferred, in its receive buffer
// (Inbound.Buffer), which exists before the call.

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

func mimeWithAttachments(n, size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: Sender <sender@example.com>\r\nTo: agent@mail.example.com\r\nSubject: attachments\r\n" +
		"Message-ID: <mem@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b0undary\"\r\n\r\n" +
		"--b0undary\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nSee the attached files.\r\n")
	for i := range n {
		fmt.Fprintf(&b, "--b0undary\r\nContent-Type: application/pdf; name=\"f%d.pdf\"\r\n"+
			"Content-Disposition: attachment; filename=\"f%d.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n", i, i)
		enc := base64.StdEncoding.EncodeToString(payload(size, byte(i)))
		for len(enc) > 76 {
			b.WriteString(enc[:76] + "\r\n")
			enc = enc[76:]
		}
		b.WriteString(enc + "\r\n")
	}
	b.WriteString("--b0undary--\r\n")
	return b.Bytes()
}

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

// inboundOf builds what ingest stores for raw in inbox in (one recipient).
func inboundOf(tb testing.TB, db *DB, in Inbox, raw []byte) Inbound {
	return inboundParsed(tb, db, in, raw, false)
}

// inboundParsed is inboundOf; with deferred, raw is parsed as ingest does for a DB
// (mailparse.ParseDeferred) and large attachments are given as Sources.
func inboundParsed(tb testing.TB, db *DB, in Inbox, raw []byte, deferred bool) Inbound {
	parse := mailparse.Parse
	if deferred {
		parse = mailparse.ParseDeferred
	}
	p, err := parse(raw, mailparse.Limits{})
	if err != nil {
		tb.Fatal(err)
	}
	now := time.Now().UTC()
	m := Message{ID: ids.NewAt(ids.Message, now), InboxID: in.ID, AccountID: in.AccountID,
		ThreadID: ids.NewAt(ids.Thread, now), RFCMessageID: p.MessageID, From: p.From, To: in.MailboxName + "@test",
		Cc: p.Cc, Subject: p.Subject, BodyText: p.Text, BodyHTML: p.HTML, ReceivedAt: now, RawSize: len(raw),
		Attachments: []AttachmentMeta{}}
	var atts [][]byte
	var srcs []AttachmentSource
	for j := range p.Attachments {
		a := &p.Attachments[j]
		m.Attachments = append(m.Attachments, AttachmentMeta{Filename: a.Filename, ContentType: a.ContentType, SizeBytes: a.Len()})
		atts = append(atts, a.Data)
		if a.Deferred() {
			if srcs == nil {
				srcs = make([]AttachmentSource, len(p.Attachments))
			}
			srcs[j] = a
		}
	}
	ev := Event{ID: ids.NewAt(ids.Event, now), AccountID: in.AccountID, InboxID: in.ID, Type: EventMessageReceived, MessageID: m.ID}
	ev.Head, ev.Tail = db.RenderEvent(ev.ID, &m)
	return Inbound{Message: m, Raw: raw, Attachments: atts, Sources: srcs, ThreadRefs: []string{m.RFCMessageID}, Event: ev,
		State: EventState{InboxID: in.ID, Type: ev.Type, Status: StatusPending, NextAt: now.UnixMilli()}}
}

// heapNow returns the heap's object bytes and the bytes allocated since the start.
func heapNow(s []metrics.Sample) (objects, allocs uint64) {
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

func heapSamples() []metrics.Sample {
	return []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/gc/heap/allocs:bytes"}}
}

type memUse struct{ peak, alloc, retained, peakFlush, allocFlush uint64 }

// measureMem runs fn once after a GC, sampling the heap from another goroutine; then, when
// settled is not nil, it goes on sampling until settled reports true (peakFlush).
func measureMem(fn func(), settled func() bool) memUse {
	s := heapSamples()
	runtime.GC()
	base, alloc0 := heapNow(s)
	var peak uint64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s := heapSamples()
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
	fn()
	v, alloc1 := heapNow(s)
	callPeak := max(peak, v)
	if settled != nil {
		for deadline := time.Now().Add(5 * time.Second); !settled() && time.Now().Before(deadline); {
			time.Sleep(2 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	v, alloc2 := heapNow(s)
	peak = max(peak, v, callPeak)
	runtime.GC()
	after, _ := heapNow(s)
	u := memUse{peak: callPeak - min(callPeak, base), alloc: alloc1 - alloc0, peakFlush: peak - min(peak, base), allocFlush: alloc2 - alloc1}
	if after > base {
		u.retained = after - base
	}
	return u
}

// pebbleSettled reports whether db has no flush or compaction running or due.
func pebbleSettled(db *DB) func() bool {
	return func() bool {
		m := db.Pebble().Metrics()
		return m.Flush.NumInProgress == 0 && m.Compact.NumInProgress == 0 && m.MemTable.Count <= 1
	}
}

// openOnDisk opens a database in dir on the real file system, with an account and an inbox.
func openOnDisk(tb testing.TB, dir string) (*DB, Inbox) {
	tb.Helper()
	db, err := Open(Options{Dir: dir, Logger: slog.New(slog.DiscardHandler), OnFatal: func(msg string) { panic(msg) }})
	if err != nil {
		tb.Fatal(err)
	}
	acc, _, _, err := db.CreateAccount("mem")
	if err != nil {
		tb.Fatal(err)
	}
	in, err := db.CreateInbox(Inbox{AccountID: acc.ID, MailboxName: "mem"})
	if err != nil {
		tb.Fatal(err)
	}
	return db, in
}

// BenchmarkStoreInboundMem stores each message into a fresh database, so that what is measured
// is the message's own cost, not the compaction of the messages before it.
func BenchmarkStoreInboundMem(b *testing.B) {
	for _, s := range memShapes() {
		for _, variant := range []string{"alone", "busy", "alone-inplace"} {
			busy, inPlace := variant == "busy", variant == "alone-inplace"
			name := s.name + "/" + variant
			b.Run(name, func(b *testing.B) {
				raw := s.raw()
				var sum memUse
				var elapsed time.Duration
				for i := range b.N {
					dir := filepath.Join(b.TempDir(), strconv.Itoa(i))
					db, in := openOnDisk(b, dir)
					var stop atomic.Bool
					var wg sync.WaitGroup
					if busy {
						for range 16 {
							item := []Inbound{inboundOf(b, db, in, mimeWithAttachments(1, 1<<10))}
							wg.Add(1)
							go func() {
								defer wg.Done()
								for !stop.Load() {
									if err := db.StoreInbound(item); err != nil {
										b.Error(err)
										return
									}
								}
							}()
						}
						time.Sleep(20 * time.Millisecond)
					}
					var items []Inbound
					if inPlace {
						// As ingest stores a message read into its RawBuffer: the
						// buffer exists before, and is not counted.
						buf := make([]byte, InboundBufferCap(len(raw)))
						msg := buf[len(buf)-len(raw):]
						copy(msg, raw)
						it := inboundParsed(b, db, in, msg, true)
						it.Buffer = buf
						items = []Inbound{it}
					} else {
						items = []Inbound{inboundOf(b, db, in, raw)}
					}
					u := measureMem(func() {
						start := time.Now()
						if err := db.StoreInbound(items); err != nil {
							b.Fatal(err)
						}
						elapsed += time.Since(start)
					}, pebbleSettled(db))
					stop.Store(true)
					wg.Wait()
					runtime.KeepAlive(items)
					sum.peak += u.peak
					sum.alloc += u.alloc
					sum.retained += u.retained
					sum.peakFlush += u.peakFlush
					sum.allocFlush += u.allocFlush
					_ = db.Close()
					_ = os.RemoveAll(dir)
				}
				n := float64(b.N)
				const mib = 1 << 20
				b.ReportMetric(float64(len(raw))/mib, "msg-MiB")
				b.ReportMetric(float64(sum.peak)/n/mib, "peak-MiB")
				b.ReportMetric(float64(sum.peak)/n/float64(len(raw)), "peak/msg")
				b.ReportMetric(float64(sum.alloc)/n/mib, "alloc-MiB")
				b.ReportMetric(float64(sum.retained)/n/mib, "retained-MiB")
				b.ReportMetric(float64(sum.peakFlush)/n/mib, "peak+flush-MiB")
				b.ReportMetric(float64(sum.allocFlush)/n/mib, "flush-alloc-MiB")
				b.ReportMetric(float64(elapsed.Milliseconds())/n, "ms/store")
			})
		}
	}
}

// TestMessageJSONLen: the measured length of a message record is its encoded length, whatever
// the bodies hold.
func TestMessageJSONLen(t *testing.T) {
	bodies := []string{"", "x", strings.Repeat("plain text\n", 10000), "quote \" back \\ \t\r\n\b\f \x01 \x7f",
		"caf\xc3\xa9 \xe2\x80\xa8 \xe2\x80\xa9 \xff \xe2\x82 \xed\xa0\x80 end", strings.Repeat("日本語\u2028", 5000) + "\xe2"}
	for _, text := range bodies {
		for _, html := range bodies {
			m := Message{ID: "msg_1", InboxID: "inb_1", AccountID: "acc_1", ThreadID: "thr_1", RFCMessageID: "<a\"b@c>",
				From: "Ann \"A\" <a@b.c>", To: "x@y", Cc: []string{"c@d"}, Subject: "s\u2028", BodyText: text, BodyHTML: html,
				Attachments: []AttachmentMeta{{Filename: "a\x01.pdf", ContentType: "application/pdf", SizeBytes: 3}},
				ReceivedAt:  time.Unix(1700000000, 123456789).UTC(), RawSize: 42}
			if got, want := messageJSONLen(&m), len(appendMessageJSON(nil, &m)); got != want {
				t.Errorf("text %q html %q: measured %d, encoded %d", clipString(text), clipString(html), got, want)
			}
		}
	}
}

func clipString(s string) string { return s[:min(len(s), 40)] }

func clipMessage(m Message) Message {
	m.BodyText, m.BodyHTML = clipString(m.BodyText), clipString(m.BodyHTML)
	return m
}

// TestStoreInboundLarge: large messages (committed alone, their record encoded in place) and
// small ones (merged) stored concurrently read back exactly, and a closed store refuses both.
func TestStoreInboundLarge(t *testing.T) {
	var logged bytes.Buffer // written under the handler's lock
	db, err := Open(Options{Dir: "/db", FS: vfs.NewMem(), Logger: slog.New(slog.NewTextHandler(&logged, nil)),
		OnFatal: func(msg string) { panic(msg) }})
	if err != nil {
		t.Fatal(err)
	}
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	text := strings.Repeat("Line with \"quotes\", a tab\tand \u2028 separators; invalid \xff byte.\r\n", 3000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var stored []Inbound
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				it := inbound(in, fmt.Sprintf("w%di%d", w, i), time.Now())
				if w%3 == 0 && i%5 == 0 {
					// Large: text and HTML bodies past directJSONBytes, a large raw and attachment.
					it.Message.BodyText, it.Message.BodyHTML = text, "<p>"+text+"</p>"
					it.Raw = payload(600<<10, byte(i))
					it.Attachments = [][]byte{payload(300<<10, byte(w))}
					it.Message.Attachments[0].SizeBytes = len(it.Attachments[0])
				}
				if err := db.StoreInbound([]Inbound{it}); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				stored = append(stored, it)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	large := 0
	for _, it := range stored {
		m, err := db.GetMessage(a.ID, it.Message.ID)
		if err != nil {
			t.Fatal(err)
		}
		want := it.Message
		want.BodyText = strings.ToValidUTF8(want.BodyText, "\uFFFD")
		want.BodyHTML = strings.ToValidUTF8(want.BodyHTML, "\uFFFD")
		if !m.ReceivedAt.Equal(want.ReceivedAt) {
			t.Fatalf("message %s: ReceivedAt %v, want %v", it.Message.ID, m.ReceivedAt, want.ReceivedAt)
		}
		m.ReceivedAt = want.ReceivedAt
		if !reflect.DeepEqual(m, want) {
			t.Fatalf("message %s read back differs:\n%+v\nwant\n%+v", it.Message.ID, clipMessage(m), clipMessage(want))
		}
		if len(it.Message.BodyText) >= directJSONBytes {
			large++
		}
		if raw, err := db.GetRaw(a.ID, it.Message.ID); err != nil || !bytes.Equal(raw, it.Raw) {
			t.Fatalf("raw of %s: %v", it.Message.ID, err)
		}
		if _, data, err := db.GetAttachment(a.ID, it.Message.ID, "f.txt"); err != nil || !bytes.Equal(data, it.Attachments[0]) {
			t.Fatalf("attachment of %s: %v", it.Message.ID, err)
		}
		if _, err := db.GetEventState(a.ID, it.Event.ID); err != nil {
			t.Fatalf("event of %s: %v", it.Message.ID, err)
		}
	}
	if large == 0 {
		t.Fatal("no large message stored")
	}
	if strings.Contains(logged.String(), "BUG") {
		t.Errorf("logged: %s", logged.String())
	}

	_ = db.Close()
	small := inbound(in, "after close", time.Now())
	big := inbound(in, "big after close", time.Now())
	big.Raw = payload(groupAloneBytes, 1)
	for _, it := range []Inbound{small, big} {
		if err := db.StoreInbound([]Inbound{it}); !errors.Is(err, errStoreClosed) {
			t.Errorf("%d raw bytes after Close: %v, want errStoreClosed", len(it.Raw), err)
		}
	}
}

// TestStoreInboundLiveAtCommit: while a large message is stored, what is live beside its raw
// bytes is little more than what its caller holds (a 20.3 MiB message with a 15 MiB
// attachment): its raw bytes and attachments are written as tables straight from the raw bytes
// (tables.go), in chunks of about 256 KiB, so neither when the tables are about to be ingested nor when
// the rest of the message is about to be committed does a copy of them exist. Parsed with Parse
// (as ingest does for stores other than DB), the decoded attachment is what is live (0.78×).
// Before the tables, the batch held raw + attachment beside the message (1.73×) unless it was
// built in the receive buffer, which then had room for it (InboundBufferCap was 2.06× the
// message), and Pebble kept that batch, as a memtable, until it was flushed. The message reads
// back byte for byte.
func TestStoreInboundLiveAtCommit(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 MiB message")
	}
	db, in := openOnDisk(t, t.TempDir())
	defer db.Close()
	raw := mimeWithAttachments(1, 15<<20)
	want := payload(15<<20, 0)
	live := func() uint64 {
		var ms runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	defer func() { testHookBeforeCommit, testHookBeforeIngest = nil, nil }()
	for _, c := range []struct {
		name            string
		deferred, place bool
		min, max        float64
	}{
		{"Parse", false, false, 0.7, 0.85},
		{"ParseDeferred", true, false, 0, 0.1},
		{"ParseDeferred in its buffer", true, true, 0, 0.1},
	} {
		var atIngest, atCommit uint64
		testHookBeforeIngest = func() { atIngest = live() }
		testHookBeforeCommit = func() { atCommit = live() }
		msg, buf := raw, []byte(nil)
		if c.place {
			// As ingest places a message read into its RawBuffer.
			buf = make([]byte, InboundBufferCap(len(raw)))
			msg = buf[len(buf)-len(raw):]
			copy(msg, raw)
		}
		base := live()
		it := inboundParsed(t, db, in, msg, c.deferred)
		it.Buffer = buf
		if err := db.StoreInbound([]Inbound{it}); err != nil {
			t.Fatal(err)
		}
		for _, at := range []struct {
			when string
			heap uint64
		}{{"before the ingestion", atIngest}, {"at the commit", atCommit}} {
			held := at.heap - min(at.heap, base)
			ratio := float64(held) / float64(len(raw))
			t.Logf("%s: %.1f MiB live %s beyond the raw message and its buffer (%.2f×)", c.name, float64(held)/(1<<20), at.when, ratio)
			if ratio > c.max || ratio < c.min {
				t.Errorf("%s: %.2f× the message live %s, want %.2f× to %.2f×", c.name, ratio, at.when, c.min, c.max)
			}
		}
		if got, err := db.GetRaw(in.AccountID, it.Message.ID); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("raw: %d bytes back, %v", len(got), err)
		}
		if _, got, err := db.GetAttachment(in.AccountID, it.Message.ID, "f0.pdf"); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("attachment: %d bytes back, %v", len(got), err)
		}
		runtime.KeepAlive(raw)
		runtime.KeepAlive(buf)
	}
}

// TestStoreInboundInPlace: messages whose batch is built over their raw bytes (Inbound.Buffer)
// read back byte for byte: raw sizes at and around the chunk boundaries, attachments given as
// Sources or as bytes, a long text body encoded in place, and buffers too small for the batch
// (stored the usual way).
func TestStoreInboundInPlace(t *testing.T) {
	db, err := Open(Options{Dir: "/db", FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler), OnFatal: func(msg string) { panic(msg) }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	text := func(n int, body []byte) []byte {
		h := "From: a@example.com\r\nSubject: text\r\n\r\n"
		return append([]byte(h), body[:n-len(h)]...)
	}
	lines := bytes.Repeat([]byte("A line of text.\r\n"), 1<<20/16*6)
	msgs := map[string][]byte{
		"raw 1 MiB":        text(chunkFromBytes, lines),
		"raw 1 MiB + 1":    text(chunkFromBytes+1, lines),
		"raw 5 chunks":     text(5*valueChunkBytes, lines),
		"raw 5 chunks - 1": text(5*valueChunkBytes-1, lines),
		// Its body's JSON is up to 6 times the body (\ufffd, \u00XX): no room in place.
		"binary body":            text(2<<20, payload(2<<20, 7)),
		"one 1 MiB attachment":   mimeWithAttachments(1, 1<<20),
		"three attachments":      mimeWithAttachments(3, 400<<10),
		"many small attachments": mimeWithAttachments(20, 60<<10),
		"qp text":                qpTextMessage(2 << 20),
	}
	for name, raw := range msgs {
		for _, deferred := range []bool{false, true} {
			for _, room := range []string{"InboundBufferCap", "raw + 64 KiB", "raw alone"} {
				n := map[string]int{"InboundBufferCap": InboundBufferCap(len(raw)), "raw + 64 KiB": len(raw) + 64<<10, "raw alone": len(raw)}[room]
				buf := make([]byte, n)
				msg := buf[n-len(raw):]
				copy(msg, raw)
				it := inboundParsed(t, db, in, msg, deferred)
				it.Buffer = buf
				want, err := mailparse.Parse(raw, mailparse.Limits{})
				if err != nil {
					t.Fatal(err)
				}
				if err := db.StoreInbound([]Inbound{it}); err != nil {
					t.Fatalf("%s, deferred=%v, %s: %v", name, deferred, room, err)
				}
				if got, err := db.GetRaw(a.ID, it.Message.ID); err != nil || !bytes.Equal(got, raw) {
					t.Fatalf("%s, deferred=%v, %s: raw of %d bytes back, %v", name, deferred, room, len(got), err)
				}
				// Built in place: the raw bytes in the buffer were moved into their records.
				if inPlace := !bytes.Equal(msg, raw); inPlace != (room == "InboundBufferCap" && name != "binary body") {
					t.Errorf("%s, deferred=%v, %s: batch built in place: %v", name, deferred, room, inPlace)
				}
				m, err := db.GetMessage(a.ID, it.Message.ID)
				if err != nil || m.BodyText != want.Text || len(m.Attachments) != len(want.Attachments) {
					t.Fatalf("%s, deferred=%v, %s: message record differs (%v)", name, deferred, room, err)
				}
				for _, wa := range want.Attachments {
					if _, got, err := db.GetAttachment(a.ID, it.Message.ID, wa.Filename); err != nil || !bytes.Equal(got, wa.Data) {
						t.Fatalf("%s, deferred=%v, %s: attachment %s of %d bytes back, %v", name, deferred, room, wa.Filename, len(got), err)
					}
				}
			}
		}
	}
}
