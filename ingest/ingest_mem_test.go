package ingest_test

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"runtime"
	"testing"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/internal/testserver"
	"github.com/mailwire/mailwire/store"
)

// bigMessage is scripts/mem/smtpload.py's "attach" message: a 20.5 MiB
// message holding a 15 MiB base64 attachment (CRLF lines of 76), and
// the attachment's bytes.
func bigMessage(t testing.TB) (raw, att []byte) {
	att = make([]byte, 15<<20)
	_, _ = rand.Read(att)
	enc := base64.StdEncoding.EncodeToString(att)
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\nTo: agent@localhost\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/mixed; boundary=BB\r\n\r\n--BB\r\nContent-Type: text/plain\r\n\r\nhello\r\n" +
		"--BB\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n" +
		"Content-Disposition: attachment; filename=x.bin\r\n\r\n")
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n--BB--\r\n")
	return b.Bytes(), att
}

// liveAtBuild is a store that, when ingest has built a message's items
// (Append's build returned), records the live heap.
type liveAtBuild struct {
	*store.DB
	live uint64
}

func (l *liveAtBuild) Append(accounts []string, build func([]string) ([]store.Inbound, error)) error {
	return l.DB.Append(accounts, func(ids []string) ([]store.Inbound, error) {
		items, err := build(ids)
		l.live = liveHeap()
		return items, err
	})
}

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestDeliverRawMemory: a 20.5 MiB message with a 15 MiB attachment
// holds, when its items are handed to the store, no decoded copy of the
// attachment beside the raw bytes (it is decoded straight into the
// store's tables; before, Parse's 15 MiB copy was live then and until the
// commit; store.TestStoreInboundLiveAtCommit measures the store's side). The message reads back byte for byte, for one
// recipient and for two, and over HTTP with an idempotency key.
func TestDeliverRawMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("a 20 MiB message on a real Pebble")
	}
	db, err := store.Open(store.Options{Dir: t.TempDir(), Logger: testserver.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &liveAtBuild{DB: db}
	svc := ingest.New(st, ingest.Config{})
	acc, _, _, err := db.CreateAccount("mem")
	if err != nil {
		t.Fatal(err)
	}
	var rcpts []ingest.Recipient
	for _, name := range []string{"one", "two"} {
		in, err := db.CreateInbox(store.Inbox{AccountID: acc.ID, MailboxName: name})
		if err != nil {
			t.Fatal(err)
		}
		rcpts = append(rcpts, ingest.Recipient{Inbox: in, Address: svc.Address(in)})
	}
	raw, att := bigMessage(t)
	// As smtpd and the HTTP API read a message of declared size.
	given := append(svc.RawBuffer(len(raw)), raw...)
	base := liveHeap()
	res, err := svc.DeliverRaw(rcpts[:1], given)
	if err != nil {
		t.Fatal(err)
	}
	held := st.live - min(st.live, base)
	t.Logf("message %.1f MiB: %.2f MiB live beyond it when its items were built", float64(len(raw))/(1<<20), float64(held)/(1<<20))
	if held > 1<<20 {
		t.Errorf("%.1f MiB live beyond the raw message when its items were built, want ≤ 1 MiB (no decoded copy)", float64(held)/(1<<20))
	}
	check := func(r ingest.Result) {
		t.Helper()
		if got, err := db.GetRaw(acc.ID, r.MessageID); err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("raw of %s: %d bytes, %v", r.MessageID, len(got), err)
		}
		meta, got, err := db.GetAttachment(acc.ID, r.MessageID, "x.bin")
		if err != nil || !bytes.Equal(got, att) || meta.SizeBytes != len(att) {
			t.Fatalf("attachment of %s: %d bytes (meta %d), %v", r.MessageID, len(got), meta.SizeBytes, err)
		}
	}
	check(res[0])
	// Its raw bytes and attachment were written as tables, from where
	// they were (store's tables.go): its buffer needs no room for a batch.
	if c := cap(svc.RawBuffer(len(raw))); c != len(raw) {
		t.Errorf("RawBuffer(%d) has a capacity of %d, want no room beyond the message", len(raw), c)
	}
	res, err = svc.DeliverRaw(rcpts, append(svc.RawBuffer(len(raw)), raw...))
	if err != nil || len(res) != 2 {
		t.Fatal(len(res), err)
	}
	check(res[0])
	check(res[1])
	// Over HTTP, with an idempotency key: stored once, replayed.
	reply, replayed, err := svc.DeliverHTTPRaw(rcpts[0].Inbox, append(svc.RawBuffer(len(raw)), raw...), "k1")
	if err != nil || replayed {
		t.Fatal(replayed, err)
	}
	again, replayed, err := svc.DeliverHTTPRaw(rcpts[0].Inbox, append(svc.RawBuffer(len(raw)), raw...), "k1")
	if err != nil || !replayed || !bytes.Equal(again, reply) {
		t.Fatalf("replay: %v %v %s", replayed, err, again)
	}
	var r ingest.Result
	if err := json.Unmarshal(reply, &r); err != nil {
		t.Fatal(err)
	}
	check(r)
}
