package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/objstorage/objstorageprovider"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Large messages do not go through a batch. Their raw bytes and
// attachments are written to sstables of their own, straight from the
// receive buffer in chunks of about 256 KiB, and ingested (pebble.DB.Ingest); the
// rest of the message (its record, event, indexes) is then committed in
// an ordinary batch. Why: Pebble keeps a batch of 32 MiB or more (half
// the memtable) as a memtable of its own until it is flushed, one flush
// at a time, so a 20 MiB message with a 15 MiB attachment kept its whole
// batch (its receive buffer, built in place) alive for seconds after the
// commit, and the WAL writer copied it once more into blocks; a smaller
// batch is copied into the memtable. Ingested, the bytes are written
// once, to the file that becomes part of the LSM, and the receive buffer
// is garbage as soon as StoreInbound returns (docs/BENCHMARKS.md "Memory
// per in-flight message").
//
// A large text or HTML body goes the same way: the message record is then
// a table too, its JSON encoding streamed into the chunks (putRecordTable)
// rather than encoded into the batch, then copied into the memtable and
// whole again by every flush and compaction.
//
// The keys are the ones a batch would have set (putValue), so readers,
// deletion and retention do not know how a message was written. The raw
// bytes, the attachments and the record are up to three tables, each
// spanning only keys of the new message id: their bounds overlap nothing
// in the memtable (an overlap would force a flush before the ingestion).
//
// Atomicity: a marker (pIngesting + message id) is committed, synced,
// before the tables are ingested, and deleted by the batch that commits
// the message. A marker found at Open is a message whose commit never
// happened (never acknowledged): its keys are deleted then
// (dropUnfinished). A failure after the ingestion deletes them at once.

// ingestFromBytes is the raw size from which a message is written as
// tables. Below it, the batch is small enough for Pebble to copy into its
// memtable and let go of at the commit; each ingestion costs a few fsyncs
// and a table (two with attachments) in the LSM. (A variable for tests.)
var ingestFromBytes = 4 << 20

const (
	// pIngesting marks a message whose tables are being ingested:
	// zi/<msgID> -> nil, deleted by the message's commit.
	pIngesting = "zi/"
	// ingestSlots bounds the large messages written as tables at once:
	// Pebble ingests one at a time anyway, and each holds two descriptors
	// while its table is written and loaded (within the descriptor
	// budget's slack for files besides Pebble's tables).
	ingestSlots = 2
	// ingestDir is the directory, inside Pebble's, where the tables are
	// written before Pebble links them in (the same file system, so the
	// link needs no copy). Its files are removed at Open.
	ingestDir = "mailwire-ingest"
)

// ingests reports which items are written as tables (ingestLarge), and
// their message ids (nil, nil when none is).
func ingests(items []Inbound) (large []bool, msgIDs []string) {
	for i := range items {
		if len(items[i].Raw) >= ingestFromBytes {
			if large == nil {
				large = make([]bool, len(items))
			}
			large[i] = true
			msgIDs = append(msgIDs, items[i].Message.ID)
		}
	}
	return large, msgIDs
}

// ingestLarge writes the raw bytes and attachments of each item marked in
// large as tables and ingests them, after committing each one's marker.
// The caller commits the rest of the items with the markers' deletion
// (markDone), or calls dropIngested. On error, nothing of it is left
// (or, should the cleanup fail too, a marker that the next Open acts on).
func (d *DB) ingestLarge(items []Inbound, large []bool, msgIDs []string) (err error) {
	d.ingestSlots <- struct{}{}
	defer func() { <-d.ingestSlots }()
	b := d.pdb.NewBatch()
	for _, id := range msgIDs {
		_ = b.Set(key2(pIngesting, id), nil, nil)
	}
	if err := d.group.commit(b); err != nil {
		return fmt.Errorf("cannot store message: %w", err)
	}
	var paths []string
	defer func() {
		if err == nil {
			return
		}
		for _, p := range paths {
			_ = d.fs.Remove(p) // absent once Pebble has linked it
		}
		if derr := d.dropIngested(msgIDs); derr != nil {
			d.log.Error("cannot remove the tables of a message not stored; the next start removes them", "error", derr)
		}
		if errors.Is(err, syscall.ENOSPC) {
			err = fmt.Errorf("cannot store message: %w: %w", ErrNoSpace, err)
			return
		}
		err = fmt.Errorf("cannot store message: %w", err)
	}()
	for i := range items {
		if !large[i] {
			continue
		}
		it := &items[i]
		m := &it.Message
		if len(m.Attachments) > 0 {
			p := d.fs.PathJoin(d.dir, ingestDir, m.ID+".attachments.sst")
			paths = append(paths, p)
			if err := d.writeTable(p, func(w *sstable.Writer) error { return putAttachmentsTable(w, it) }); err != nil {
				return err
			}
		}
		if recordInTable(it) {
			p := d.fs.PathJoin(d.dir, ingestDir, m.ID+".message.sst")
			paths = append(paths, p)
			if err := d.writeTable(p, func(w *sstable.Writer) error {
				return putRecordTable(w, key2(pMessage, m.ID), m)
			}); err != nil {
				return err
			}
		}
		p := d.fs.PathJoin(d.dir, ingestDir, m.ID+".raw.sst")
		paths = append(paths, p)
		if err := d.writeTable(p, func(w *sstable.Writer) error {
			return putValueTable(w, key2(pRaw, m.ID), it.Raw)
		}); err != nil {
			return err
		}
	}
	if testHookBeforeIngest != nil {
		testHookBeforeIngest()
	}
	if err := d.pdb.Ingest(context.Background(), paths); err != nil {
		return err
	}
	return nil
}

// testHookBeforeIngest, set by tests, runs when ingestLarge's tables are
// written and synced, before Pebble ingests them. (A test's crash clone of
// a vfs.NewCrashableMem must not be taken while an ingestion runs: MemFS's
// Link takes its clone lock shared twice, and a clone waiting between the
// two blocks both forever.)
var testHookBeforeIngest func()

// markDone deletes the markers of the items marked in large in b, the
// batch that commits them.
func markDone(b *pebble.Batch, items []Inbound, large []bool) {
	for i := range items {
		if large != nil && large[i] {
			_ = b.Delete(key2(pIngesting, items[i].Message.ID), nil)
		}
	}
}

// writeTable writes a table with what put sets, synced, at p.
func (d *DB) writeTable(p string, put func(w *sstable.Writer) error) error {
	f, err := d.fs.Create(p, vfs.WriteCategoryUnspecified)
	if err != nil {
		return err
	}
	w := sstable.NewWriter(objstorageprovider.NewFileWritable(f), d.tableOpts)
	perr := put(w)
	// Close finishes the table and syncs the file (Ingest requires it).
	if err := errors.Join(perr, w.Close()); err != nil {
		return fmt.Errorf("cannot write %s: %w", path.Base(p), err)
	}
	return nil
}

// putValueTable sets v under k in w as putValue sets it in a batch.
func putValueTable(w *sstable.Writer, k, v []byte) error {
	return forEachChunk(k, len(v), func(ck []byte, off, size int) error {
		return w.Set(ck, v[off:off+size])
	})
}

// recordInTable reports whether the message record of it, an item written
// as tables (ingests), is written as a table too (putRecordTable) instead
// of set in the batch: when its bodies are large enough to be chunked. A
// large text body in the batch was copied whole into the memtable, then
// by every flush and compaction, each a buffer of its size.
func recordInTable(it *Inbound) bool {
	return len(it.Message.BodyText)+len(it.Message.BodyHTML) >= chunkFromBytes
}

// bodyPieceBytes is how much of a body putRecordTable encodes at a time.
const bodyPieceBytes = 16 << 10

// putRecordTable sets the JSON record of m under k in w, in chunks as
// putValue sets a value of chunkFromBytes or more (the caller's bodies
// are that long), encoding the bodies piece by piece into the chunk being
// filled: no buffer of the record's size exists.
func putRecordTable(w *sstable.Writer, k []byte, m *Message) error {
	c := recordChunker{w: w, k: k}
	// Room for a chunk and a piece at its longest encoding (6 bytes per
	// byte: \u00XX, \ufffd), so that a body never makes it grow.
	dst := appendMessageJSONWith(make([]byte, 0, valueChunkBytes+6*bodyPieceBytes+4<<10), m, c.body)
	dst = c.spill(dst)
	if len(dst) > 0 && c.err == nil {
		c.err = w.Set(chunkKey(k, c.i), dst)
	}
	if c.err != nil {
		return fmt.Errorf("message record: %w", c.err)
	}
	return nil
}

// recordChunker writes a value being encoded as chunks of valueChunkBytes
// under k, the first error kept.
type recordChunker struct {
	w   *sstable.Writer
	k   []byte
	i   int // the next chunk's index
	err error
}

// spill writes the whole chunks at the start of dst and returns the rest,
// moved to dst's start.
func (c *recordChunker) spill(dst []byte) []byte {
	off := 0
	for ; len(dst)-off >= valueChunkBytes; off += valueChunkBytes {
		if c.err == nil {
			c.err = c.w.Set(chunkKey(c.k, c.i), dst[off:off+valueChunkBytes])
		}
		c.i++
	}
	return dst[:copy(dst, dst[off:])]
}

// body appends s as appendJSONString does, a piece at a time, spilling
// whole chunks after each piece. A piece ends before a byte that starts a
// rune (see appendJSONStringBody) among the last utf8.UTFMax; when none
// does, no valid sequence spans the end (a rune is at most that long), and
// the decoder takes each of those bytes alone either way.
func (c *recordChunker) body(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for len(s) > 0 {
		cut := min(len(s), bodyPieceBytes)
		for b := cut; cut < len(s) && b > cut-utf8.UTFMax; b-- {
			if utf8.RuneStart(s[b]) {
				cut = b
				break
			}
		}
		dst = c.spill(appendJSONStringBody(dst, s[:cut]))
		s = s[cut:]
	}
	return append(dst, '"')
}

// putAttachmentsTable sets the attachments of it in w, in key order (a
// table's keys must be increasing), each as putValue or putValueFrom
// would set it in a batch.
func putAttachmentsTable(w *sstable.Writer, it *Inbound) error {
	m := &it.Message
	order := make([]int, len(m.Attachments))
	for j := range order {
		order[j] = j
	}
	// A value's chunk keys (k + "\x00" + index) sort right after k and
	// before any other attachment's key: filenames have no control
	// characters, and they are unique within a message.
	slices.SortFunc(order, func(a, b int) int { return strings.Compare(m.Attachments[a].Filename, m.Attachments[b].Filename) })
	var chunk []byte
	for i, j := range order {
		name := m.Attachments[j].Filename
		if i > 0 && name == m.Attachments[order[i-1]].Filename {
			return fmt.Errorf("BUG: two attachments named %q", name)
		}
		k := key(pAttachment+m.ID, name)
		if j >= len(it.Sources) || it.Sources[j] == nil {
			if err := putValueTable(w, k, it.Attachments[j]); err != nil {
				return err
			}
			continue
		}
		n, r := it.Sources[j].Len(), it.Sources[j].Reader()
		if err := forEachChunk(k, n, func(ck []byte, _, size int) error {
			if cap(chunk) < size {
				chunk = make([]byte, size)
			}
			if _, err := io.ReadFull(r, chunk[:size]); err != nil {
				return fmt.Errorf("attachment %q: %d of %d bytes: %w", name, size, n, err)
			}
			return w.Set(ck, chunk[:size])
		}); err != nil {
			return err
		}
		if err := sourceEnded(r, n); err != nil {
			return fmt.Errorf("attachment %q: %w", name, err)
		}
	}
	return nil
}

// dropIngested deletes what ingestLarge may have written for msgIDs, and
// their markers, synced.
func (d *DB) dropIngested(msgIDs []string) error {
	if len(msgIDs) == 0 {
		return nil
	}
	b := d.pdb.NewBatch()
	for _, id := range msgIDs {
		deleteValue(b, key2(pRaw, id))
		deleteValue(b, key2(pMessage, id))
		ap := prefixKey(pAttachment + id)
		_ = b.DeleteRange(ap, prefixEnd(ap), nil)
		_ = b.Delete(key2(pIngesting, id), nil)
	}
	return b.Commit(pebble.Sync)
}

// dropUnfinished, at Open, deletes the tables of messages whose commit
// never happened (their markers are left), and the table files Pebble
// never linked.
func (d *DB) dropUnfinished() error {
	dir := d.fs.PathJoin(d.dir, ingestDir)
	if err := d.fs.RemoveAll(dir); err != nil {
		return fmt.Errorf("cannot remove %s: %w", dir, err)
	}
	if err := d.fs.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("cannot create %s: %w", dir, err)
	}
	var msgIDs []string
	p := []byte(pIngesting)
	if err := d.scanRange(p, prefixEnd(p), false, func(k, _ []byte) bool {
		msgIDs = append(msgIDs, string(k[len(p):]))
		return true
	}); err != nil {
		return err
	}
	if len(msgIDs) == 0 {
		return nil
	}
	if err := d.dropIngested(msgIDs); err != nil {
		return fmt.Errorf("cannot remove the raw bytes of %d messages never stored: %w", len(msgIDs), err)
	}
	d.log.Warn("removed the raw bytes of large messages whose write was interrupted (none was acknowledged)", "count", len(msgIDs))
	return nil
}
