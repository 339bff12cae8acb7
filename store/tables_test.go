package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// smallTables makes messages from 1 MiB on written as tables for the test (4 MiB otherwise),
// so that its messages stay small enough for -race.
func smallTables(t *testing.T) {
	old := ingestFromBytes
	ingestFromBytes = 1 << 20
	t.Cleanup(func() { ingestFromBytes = old })
}

// keysOf lists the keys that mention id.
func keysOf(t *testing.T, db *DB, id string) []string {
	t.Helper()
	var ks []string
	if err := db.scan(nil, false, func(k, _ []byte) bool {
		if bytes.Contains(k, []byte(id)) {
			ks = append(ks, fmt.Sprintf("%q", k))
		}
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return ks
}

// ingestFiles lists what is left in the directory the tables are written in.
func ingestFiles(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(fs.PathJoin(dir, ingestDir))
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// TestLargeMessagesAreIngestedAsTables: messages from ingestFromBytes on (1 MiB here) are written as tables
// (Pebble counts the ingestions) and read back byte for byte beside small ones stored at the same
// time: raw bytes alone, attachments given as Sources and as bytes, names that are prefixes of
// one another, several recipients of one message. No marker and no table file is left, and
// deleting the inbox deletes what was ingested.
func TestLargeMessagesAreIngestedAsTables(t *testing.T) {
	smallTables(t)
	fs := vfs.NewMem()
	db := openMem(t, fs)
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in, other := newInbox(t, db, a.ID, "agent"), newInbox(t, db, a.ID, "other")
	text := func(n int) []byte {
		h := "From: a@example.com\r\nSubject: text\r\n\r\n"
		return append([]byte(h), bytes.Repeat([]byte("A line of text.\r\n"), n/17+1)[:n-len(h)]...)
	}
	named := inbound(in, "named", time.Now())
	named.Raw = payload(ingestFromBytes+3, 9)
	named.Message.Attachments = nil
	for i, name := range []string{"a.txt", "a", "a (2).txt", "b", "a.txt.gz"} {
		data := payload([]int{chunkFromBytes + 1, 10, chunkFromBytes, chunkFromBytes - 1, 0}[i], byte(i))
		named.Message.Attachments = append(named.Message.Attachments, AttachmentMeta{Filename: name, ContentType: "text/plain", SizeBytes: len(data)})
		named.Attachments = append(named.Attachments, data)
	}
	cases := map[string]func() []Inbound{
		"raw at the threshold": func() []Inbound { return []Inbound{inboundOf(t, db, in, text(ingestFromBytes))} },
		"raw below it":         func() []Inbound { return []Inbound{inboundOf(t, db, in, text(ingestFromBytes-1))} },
		"attachments as sources": func() []Inbound {
			return []Inbound{inboundParsed(t, db, in, mimeWithAttachments(3, 600<<10), true)}
		},
		"attachments as bytes": func() []Inbound {
			return []Inbound{inboundParsed(t, db, in, mimeWithAttachments(2, chunkFromBytes), false)}
		},
		"names that prefix others": func() []Inbound { return []Inbound{named} },
		"two recipients": func() []Inbound {
			raw := mimeWithAttachments(1, chunkFromBytes)
			return []Inbound{inboundParsed(t, db, in, raw, true), inboundParsed(t, db, other, raw, true)}
		},
		"a large text body": func() []Inbound { return []Inbound{inboundOf(t, db, in, text(3*chunkFromBytes+5))} },
		"large bodies, hard at every piece's edge": func() []Inbound {
			it := inbound(in, "hard bodies", time.Now())
			it.Raw = payload(ingestFromBytes, 3)
			it.Message.BodyText, it.Message.BodyHTML = hardBody(2*chunkFromBytes, 0), hardBody(chunkFromBytes/2, 1)
			return []Inbound{it}
		},
	}
	// Small messages stored meanwhile, to be merged into the same group commits.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var small []Inbound
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 300; i++ {
			select {
			case <-stop:
				return
			default:
			}
			it := inbound(other, fmt.Sprint("small", i), time.Now())
			if err := db.StoreInbound([]Inbound{it}); err != nil {
				t.Error(err)
				return
			}
			small = append(small, it)
		}
	}()
	before := db.pdb.Metrics().Ingest.Count
	var stored []Inbound
	for name, items := range cases {
		its := items()
		if err := db.StoreInbound(its); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		stored = append(stored, its...)
	}
	close(stop)
	wg.Wait()
	// Every case but "raw below it" is ingested.
	if got := db.pdb.Metrics().Ingest.Count - before; got != uint64(len(cases)-1) {
		t.Errorf("%d ingestions, want %d (one per call with a large message)", got, len(cases)-1)
	}
	for _, it := range append(stored, small...) {
		if raw, err := db.GetRaw(a.ID, it.Message.ID); err != nil || !bytes.Equal(raw, it.Raw) {
			t.Fatalf("raw of %s (%d bytes): %d bytes back, %v", it.Message.Subject, len(it.Raw), len(raw), err)
		}
		m, err := db.GetMessage(a.ID, it.Message.ID)
		if err != nil || len(m.Attachments) != len(it.Message.Attachments) || m.Subject != it.Message.Subject {
			t.Fatalf("message %s: %v", it.Message.Subject, err)
		}
		// The record is the encoding, whichever way it was written: one
		// value, or (large bodies) chunks of a table.
		rec, err := db.getValue(key2(pMessage, it.Message.ID))
		if want := appendMessageJSON(nil, &it.Message); err != nil || !bytes.Equal(rec, want) {
			t.Fatalf("record of %s: %d bytes back, want %d: %v", it.Message.Subject, len(rec), len(want), err)
		}
		chunked, err := db.has(chunkKey(key2(pMessage, it.Message.ID), 0))
		if wantChunks := len(it.Raw) >= ingestFromBytes && recordInTable(&it); err != nil || chunked != wantChunks {
			t.Fatalf("record of %s in chunks: %v, want %v (%v)", it.Message.Subject, chunked, wantChunks, err)
		}
		for j, am := range it.Message.Attachments {
			var want []byte
			if j < len(it.Sources) && it.Sources[j] != nil {
				want, _ = io.ReadAll(it.Sources[j].Reader())
			} else {
				want = it.Attachments[j]
			}
			if _, got, err := db.GetAttachment(a.ID, it.Message.ID, am.Filename); err != nil || !bytes.Equal(got, want) {
				t.Fatalf("attachment %q of %s: %d of %d bytes back, %v", am.Filename, it.Message.Subject, len(got), len(want), err)
			}
		}
	}
	if ks := keysOf(t, db, pIngesting); len(ks) > 0 {
		t.Errorf("markers left: %v", ks)
	}
	if names := ingestFiles(t, fs, "/db"); len(names) > 0 {
		t.Errorf("table files left: %v", names)
	}
	if _, err := db.DeleteInbox(a.ID, in.ID); err != nil {
		t.Fatal(err)
	}
	for _, it := range stored {
		if it.Message.InboxID == in.ID {
			if ks := keysOf(t, db, it.Message.ID); len(ks) > 0 {
				t.Fatalf("keys of a deleted inbox's message survive: %v", ks[:min(3, len(ks))])
			}
		}
	}
}

// hardBody is n bytes of text in which every byte that the JSON encoding or the UTF-8 decoder
// treats apart (quotes, backslashes, control characters, runes of 2 to 4 bytes, U+2028,
// invalid and truncated sequences, lone continuation bytes) falls on each side of every
// bodyPieceBytes boundary, at every offset.
func hardBody(n int, seed byte) string {
	hard := []string{"\"", "\\", "\n", "\x01", "é", "€", "😀", "\u2028", "\xff", "\xe2\x82", "\x80\x80", "\xf0\x9f\x98", "<&>"}
	var b strings.Builder
	b.Grow(n + 8)
	i := int(seed)
	for b.Len() < n {
		// Plain text up to a few bytes before the next boundary, then hard pieces across it.
		next := (b.Len()/bodyPieceBytes + 1) * bodyPieceBytes
		if pad := next - b.Len() - 1 - i%6; pad > 0 {
			b.WriteString(strings.Repeat("x", pad))
		}
		for range 4 {
			b.WriteString(hard[i%len(hard)])
			i++
		}
	}
	return b.String()
}

// TestInterruptedIngestionIsRemovedAtOpen: a crash (only what was synced survives) after a large
// message's tables were ingested but before its commit leaves its raw bytes and attachments in
// Pebble, unreachable; the next Open deletes them and says so. A crash right after StoreInbound
// returned loses nothing of a large message: the tables were synced before they were ingested.
func TestInterruptedIngestionIsRemovedAtOpen(t *testing.T) {
	smallTables(t)
	fs := vfs.NewCrashableMem()
	db := openMem(t, fs)
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	kept := inboundParsed(t, db, in, mimeWithAttachments(1, chunkFromBytes), true)
	if err := db.StoreInbound([]Inbound{kept}); err != nil {
		t.Fatal(err)
	}
	afterKept := fs.CrashClone(vfs.CrashCloneCfg{})

	var crashed *vfs.MemFS
	testHookBeforeCommit = func() { crashed = fs.CrashClone(vfs.CrashCloneCfg{}) }
	defer func() { testHookBeforeCommit = nil }()
	lost := inboundParsed(t, db, in, mimeWithAttachments(2, 600<<10), true)
	lostText := inbound(in, "a large body", time.Now())
	lostText.Raw, lostText.Message.BodyText = payload(ingestFromBytes, 1), strings.Repeat("text ", chunkFromBytes/4)
	if err := db.StoreInbound([]Inbound{lost, lostText}); err != nil {
		t.Fatal(err)
	}
	testHookBeforeCommit = nil
	_ = db.Close()

	for name, c := range map[string]*vfs.MemFS{"crash before the commit": crashed, "crash after the return": afterKept} {
		var logged bytes.Buffer
		db2, err := Open(Options{Dir: "/db", FS: c, Logger: slog.New(slog.NewTextHandler(&logged, nil)), OnFatal: func(msg string) { panic(msg) }})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if raw, err := db2.GetRaw(a.ID, kept.Message.ID); err != nil || !bytes.Equal(raw, kept.Raw) {
			t.Errorf("%s: raw of the acknowledged message: %d bytes back, %v", name, len(raw), err)
		}
		if _, got, err := db2.GetAttachment(a.ID, kept.Message.ID, "f0.pdf"); err != nil || len(got) != chunkFromBytes {
			t.Errorf("%s: attachment of the acknowledged message: %d bytes back, %v", name, len(got), err)
		}
		for _, id := range []string{lost.Message.ID, lostText.Message.ID} {
			if ks := keysOf(t, db2, id); len(ks) > 0 {
				t.Errorf("%s: keys of a message never committed survive the Open: %v", name, ks[:min(3, len(ks))])
			}
		}
		if ks := keysOf(t, db2, pIngesting); len(ks) > 0 {
			t.Errorf("%s: markers left: %v", name, ks)
		}
		removed := strings.Contains(logged.String(), "write was interrupted")
		if removed != (name == "crash before the commit") {
			t.Errorf("%s: Open logged the removal: %v (%s)", name, removed, logged.String())
		}
		_ = db2.Close()
	}
}

// failingSource fails after half its bytes.
type failingSource struct{ n int }

func (s failingSource) Len() int { return s.n }
func (s failingSource) Reader() io.Reader {
	return io.MultiReader(bytes.NewReader(make([]byte, s.n/2)), iotestErrReader{})
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("decoding failed") }

// TestFailedIngestionLeavesNothing: when a large message's tables cannot be written (here, an
// attachment source fails half way), StoreInbound fails, and neither a marker, a key of the
// message, nor a table file is left; the next large message is stored.
func TestFailedIngestionLeavesNothing(t *testing.T) {
	smallTables(t)
	fs := vfs.NewMem()
	db := openMem(t, fs)
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	for _, n := range []int{chunkFromBytes + 1, 100} {
		bad := inboundParsed(t, db, in, mimeWithAttachments(2, 600<<10), true)
		bad.Sources = []AttachmentSource{nil, failingSource{n}}
		bad.Message.Attachments[1].SizeBytes = n
		err := db.StoreInbound([]Inbound{bad})
		if err == nil || !strings.Contains(err.Error(), "decoding failed") {
			t.Fatalf("source of %d bytes failing: %v, want the source's error", n, err)
		}
		if ks := keysOf(t, db, bad.Message.ID); len(ks) > 0 {
			t.Errorf("keys of the failed message: %v", ks[:min(3, len(ks))])
		}
		if ks := keysOf(t, db, bad.Event.ID); len(ks) > 0 {
			t.Errorf("keys of the failed message's event: %v", ks)
		}
		if names := ingestFiles(t, fs, "/db"); len(names) > 0 {
			t.Errorf("table files left: %v", names)
		}
	}
	good := inboundParsed(t, db, in, mimeWithAttachments(2, 600<<10), true)
	if err := db.StoreInbound([]Inbound{good}); err != nil {
		t.Fatal(err)
	}
	if raw, err := db.GetRaw(a.ID, good.Message.ID); err != nil || !bytes.Equal(raw, good.Raw) {
		t.Fatalf("raw after a failed message: %d bytes back, %v", len(raw), err)
	}
}

// TestPebbleEventsReachTheStoresLogger: Pebble's background errors (a failed flush or compaction)
// are logged through the store's logger, and a data corruption report goes to OnFatal (after which
// the store refuses writes). When the table writer's options were first made (EnsureDefaults
// before the logger was set), Pebble bound its own default logger into these handlers: the error
// went to Go's log and a corruption called os.Exit(1), past OnFatal.
func TestPebbleEventsReachTheStoresLogger(t *testing.T) {
	var logged bytes.Buffer
	var fatal string
	d := &DB{log: slog.New(slog.NewTextHandler(&logged, nil))}
	po := d.pebbleOptions(Options{Dir: "/db", FS: vfs.NewMem(), OnFatal: func(msg string) { fatal = msg }})
	defer po.Cache.Unref()
	po.EventListener.BackgroundError(errors.New("flush failed: no space left on device"))
	if !strings.Contains(logged.String(), "flush failed: no space left on device") || !strings.Contains(logged.String(), "component=pebble") {
		t.Errorf("background error not in the store's log: %q", logged.String())
	}
	func() {
		defer func() { _ = recover() }() // Fatalf must not return
		po.EventListener.DataCorruption(pebble.DataCorruptionInfo{Path: "000001.sst", Details: errors.New("checksum mismatch")})
	}()
	if !strings.Contains(fatal, "000001.sst") || !d.failed.Load() {
		t.Errorf("data corruption: OnFatal got %q, store failed %v", fatal, d.failed.Load())
	}
}

// TestStoreInboundDuringClose: large and small messages stored while the store closes are each
// stored or refused with errStoreClosed, and the race detector sees no send on the group
// committer's channel racing its close (there was one: send relied on recovering from a send on
// a closed channel).
func TestStoreInboundDuringClose(t *testing.T) {
	smallTables(t)
	for round := range 3 {
		db := openMem(t, vfs.NewMem())
		a, _, _, _ := db.CreateAccount("a")
		in := newInbox(t, db, a.ID, "agent")
		raw := mimeWithAttachments(2, 600<<10)
		var wg sync.WaitGroup
		var stored, refused atomic.Int64
		for w := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					it := inbound(in, fmt.Sprintf("w%di%d", w, i), time.Now())
					if w%2 == 0 {
						it = inboundParsed(t, db, in, raw, true)
					}
					switch err := db.StoreInbound([]Inbound{it}); {
					case err == nil:
						stored.Add(1)
					case errors.Is(err, errStoreClosed):
						refused.Add(1)
						return
					default:
						t.Errorf("round %d: %v", round, err)
						return
					}
				}
			}()
		}
		for stored.Load() < int64(4+4*round) {
			runtime.Gosched()
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		if refused.Load() != 6 {
			t.Errorf("round %d: %d writers refused after the close, want 6", round, refused.Load())
		}
	}
}

// TestLargeBodyRecordIsStreamed: the record of a message with a large text body, written as a
// table, is encoded into the table's chunks piece by piece, so what storing it allocates does
// not grow with the body: 0.0× per byte of body from a 4 MiB body to a 12 MiB one (the table
// writers' buffers, about 2 MiB a table, do not depend on it). Before, the record was encoded
// into the batch (1× the body), which Pebble then copied into the memtable. The message reads
// back whole. (Allocated bytes, from runtime/metrics, not time.)
func TestLargeBodyRecordIsStreamed(t *testing.T) {
	if testing.Short() {
		t.Skip("bodies of 4 and 12 MiB")
	}
	db, in := openOnDisk(t, t.TempDir())
	defer db.Close()
	samples := heapSamples()
	allocs := func() uint64 { _, n := heapNow(samples); return n }
	raw := []byte(strings.Repeat("r", ingestFromBytes))
	store := func(bodyBytes int) uint64 {
		it := inbound(in, "a long text", time.Now())
		it.Message.BodyText, it.Raw = hardBody(bodyBytes, 0), raw
		before := allocs()
		if err := db.StoreInbound([]Inbound{it}); err != nil {
			t.Fatal(err)
		}
		n := allocs() - before
		var want Message
		if err := json.Unmarshal(appendMessageJSON(nil, &it.Message), &want); err != nil {
			t.Fatal(err)
		}
		if m, err := db.GetMessage(in.AccountID, it.Message.ID); err != nil || m.BodyText != want.BodyText {
			t.Fatalf("body: %d bytes back, want %d: %v", len(m.BodyText), len(want.BodyText), err)
		}
		return n
	}
	small, large := store(4<<20), store(12<<20)
	slope := (float64(large) - float64(small)) / float64(8<<20)
	t.Logf("%.1f MiB allocated for a 4 MiB body, %.1f MiB for 12 MiB: %.2f× per byte of body", float64(small)/(1<<20), float64(large)/(1<<20), slope)
	if slope > 0.1 && !raceEnabled {
		t.Errorf("%.2f× per byte of body allocated to store it, want ≤ 0.1× (no buffer of the record's size)", slope)
	}
}
