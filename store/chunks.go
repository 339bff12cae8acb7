package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cockroachdb/pebble/v2"
)

// Large values (a message's raw bytes, an attachment) are stored as
// chunks of valueChunkBytes under the value's key + "\x00" + a 4-byte
// big-endian index, instead of as one value. Pebble copies a value whole
// at every step after the commit: a flush or compaction saves it, builds
// an sstable block of it and compresses the block, each a buffer of the
// value's size (measured on a 20 MiB message: about 3× its size in
// transient heap per flush, docs/BENCHMARKS.md "Memory per in-flight
// message"). In chunks those buffers are a chunk's size. Values below
// chunkFromBytes, and values written before chunking, are one value
// under the key itself; readers try that first. The "\x00" cannot end
// another key of the same prefix: filenames have no control characters
// (mailparse.sanitizeFilename) and message ids are of one length.
//
// A chunk is a little under 256 KiB so that a data block holding one (with
// its key and the block's columns) stays within the size Pebble's table
// writer keeps its block buffer at (colblk's maxBlockRetainedSize, 256
// KiB): at 256 KiB every block of every table written, flushed or
// compacted allocated a new buffer, as much garbage as the value itself.
// Chunks written before were 256 KiB; readers do not depend on the size.
const (
	valueChunkBytes = 252 << 10
	chunkFromBytes  = 1 << 20
	// maxPreallocBytes bounds what getChunks allocates on the word of a
	// chunk's index (a corrupt one would ask for terabytes).
	maxPreallocBytes = 256 << 20
)

// chunkKey is the key of chunk i of the value under k.
func chunkKey(k []byte, i int) []byte {
	ck := make([]byte, 0, len(k)+5)
	ck = append(ck, k...)
	ck = append(ck, 0)
	return binary.BigEndian.AppendUint32(ck, uint32(i))
}

// chunkRange bounds the chunk keys of k.
func chunkRange(k []byte) (lower, upper []byte) {
	lower = append(append([]byte(nil), k...), 0)
	upper = append(append([]byte(nil), k...), 1)
	return lower, upper
}

// valueRecordBytes is what putValue may add to a batch (batchRecordBytes
// for each record it sets).
func valueRecordBytes(keyLen, valueLen int) int {
	if valueLen < chunkFromBytes {
		return batchRecordBytes(keyLen, valueLen)
	}
	n := (valueLen + valueChunkBytes - 1) / valueChunkBytes
	return n*batchRecordBytes(keyLen+5, 0) + valueLen
}

// forEachChunk calls put with the key, offset and size of each record a
// value of n bytes is stored in under k: k itself below chunkFromBytes,
// else its chunks. It stops at put's first error.
func forEachChunk(k []byte, n int, put func(ck []byte, off, size int) error) error {
	if n < chunkFromBytes {
		return put(k, 0, n)
	}
	for i, off := 0, 0; off < n; i, off = i+1, off+valueChunkBytes {
		if err := put(chunkKey(k, i), off, min(valueChunkBytes, n-off)); err != nil {
			return err
		}
	}
	return nil
}

// sourceEnded reports an error when r, having produced the n bytes its
// source announced, has more.
func sourceEnded(r io.Reader, n int) error {
	var probe [1]byte
	if m, _ := r.Read(probe[:]); m != 0 {
		return fmt.Errorf("more than the %d bytes announced", n)
	}
	return nil
}

// putValue sets v under k in b, in chunks when it is large.
func putValue(b *pebble.Batch, k, v []byte) {
	_ = forEachChunk(k, len(v), func(ck []byte, off, size int) error {
		return b.Set(ck, v[off:off+size], nil)
	})
}

// putValueFrom sets what src produces under k in b, as putValue would set
// it, reading it straight into the batch (Pebble's SetDeferred) instead
// of through a buffer of its own.
func putValueFrom(b *pebble.Batch, k []byte, src AttachmentSource) error {
	n := src.Len()
	r := src.Reader()
	if err := forEachChunk(k, n, func(ck []byte, _, size int) error {
		op := b.SetDeferred(len(ck), size)
		copy(op.Key, ck)
		if _, err := io.ReadFull(r, op.Value); err != nil {
			return fmt.Errorf("%d of %d bytes: %w", size, n, err)
		}
		return op.Finish()
	}); err != nil {
		return err
	}
	return sourceEnded(r, n) // src must end where Len said
}

// deleteValue deletes what putValue set under k.
func deleteValue(b *pebble.Batch, k []byte) {
	_ = b.Delete(k, nil)
	lo, hi := chunkRange(k)
	_ = b.DeleteRange(lo, hi, nil)
}

// getValue reads what putValue set under k (a copy), or ErrNotFound.
func (d *DB) getValue(k []byte) ([]byte, error) {
	v, err := d.getRaw(k)
	if !errors.Is(err, ErrNotFound) {
		return v, err
	}
	return d.getChunks(k)
}

// getRecord decodes the record of message id into v (a Message, or the
// part of one a caller needs), or returns ErrNotFound. A record with large
// bodies is in chunks (putRecordTable).
func (d *DB) getRecord(id string, v any) error {
	k := key2(pMessage, id)
	err := d.getJSON(k, v)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	data, err := d.getChunks(k)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("cannot decode %q: %w", k, err)
	}
	return nil
}

// getChunks reads the chunks of the value under k, joined, or returns
// ErrNotFound when it has none.
func (d *DB) getChunks(k []byte) ([]byte, error) {
	lo, hi := chunkRange(k)
	// The last chunk and the first give the length (all but the last are
	// of one size): the value is read into one buffer of its size.
	lastIndex, lastLen := 0, 0
	if err := d.scanRange(lo, hi, true, func(ck, cv []byte) bool {
		if len(ck) == len(k)+5 {
			lastIndex, lastLen = int(binary.BigEndian.Uint32(ck[len(k)+1:])), len(cv)
		}
		return false
	}); err != nil {
		return nil, err
	}
	var out []byte
	next := 0
	bad := false
	err := d.scanRange(lo, hi, false, func(ck, cv []byte) bool {
		if len(ck) != len(k)+5 || binary.BigEndian.Uint32(ck[len(k)+1:]) != uint32(next) {
			bad = true
			return false
		}
		if out == nil {
			out = make([]byte, 0, min(max(lastIndex*len(cv)+lastLen, len(cv)), maxPreallocBytes))
		}
		out = append(out, cv...)
		next++
		return true
	})
	switch {
	case err != nil:
		return nil, err
	case bad:
		return nil, fmt.Errorf("cannot read %q: chunk %d is missing", k, next)
	case next == 0:
		return nil, ErrNotFound
	}
	return out, nil
}
