package store

import (
	"bytes"
	"log/slog"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// TestChunkedValues: a raw message and an attachment of chunkFromBytes or
// more are stored in chunks (none of the values over valueChunkBytes),
// read back exactly, and gone with their inbox; small ones stay one value.
func TestChunkedValues(t *testing.T) {
	db, err := Open(Options{Dir: "/db", FS: vfs.NewMem(), Logger: slog.New(slog.DiscardHandler), OnFatal: func(msg string) { panic(msg) }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	a, _, _, _ := db.CreateAccount("a")
	in := newInbox(t, db, a.ID, "agent")
	cases := []struct{ raw, att int }{
		{100, 10}, {chunkFromBytes - 1, chunkFromBytes}, {3*valueChunkBytes + 7 + chunkFromBytes, 5 * valueChunkBytes},
	}
	var items []Inbound
	for i, c := range cases {
		it := inbound(in, string(rune('a'+i)), time.Now())
		it.Raw = payload(c.raw, byte(i))
		it.Attachments = [][]byte{payload(c.att, byte(i+10))}
		it.Message.Attachments[0].SizeBytes = c.att
		if err := db.StoreInbound([]Inbound{it}); err != nil {
			t.Fatal(err)
		}
		items = append(items, it)
	}
	for _, it := range items {
		raw, err := db.GetRaw(a.ID, it.Message.ID)
		if err != nil || !bytes.Equal(raw, it.Raw) {
			t.Fatalf("raw of %d bytes: %d bytes back, %v", len(it.Raw), len(raw), err)
		}
		name := it.Message.Attachments[0].Filename
		_, data, err := db.GetAttachment(a.ID, it.Message.ID, name)
		if err != nil || !bytes.Equal(data, it.Attachments[0]) {
			t.Fatalf("attachment of %d bytes: %d bytes back, %v", len(it.Attachments[0]), len(data), err)
		}
		_, whole := db.getRaw(key2(pRaw, it.Message.ID))
		if chunked := len(it.Raw) >= chunkFromBytes; chunked != (whole != nil) {
			t.Fatalf("raw of %d bytes: stored whole: %v", len(it.Raw), whole == nil)
		}
	}
	keys := func() (n int) {
		for _, p := range []string{pRaw, pAttachment} {
			_ = db.scan([]byte(p), false, func(k, v []byte) bool {
				if len(v) > valueChunkBytes && len(v) >= chunkFromBytes {
					t.Errorf("%q: a value of %d bytes", k, len(v))
				}
				n++
				return true
			})
		}
		return n
	}
	if n := keys(); n < 2*len(cases)+8 {
		t.Fatalf("%d raw and attachment keys, want the chunks", n)
	}
	if _, err := db.DeleteInbox(a.ID, in.ID); err != nil {
		t.Fatal(err)
	}
	if n := keys(); n != 0 {
		t.Fatalf("%d raw and attachment keys left after the inbox was deleted", n)
	}
}
