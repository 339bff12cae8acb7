package mailparse

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
)

// Deferred decoding (ParseDeferred).
//
// Parse decodes every attachment into a buffer of its own, which a store then copies into its
// write batch: a 15 MiB attachment is held twice while it is stored, beside the raw message. A
// message parsed by ParseDeferred leaves its large attachments encoded in the raw message when
// decoding them cannot fail (base64 of the alphabet and line breaks alone, or content kept as it
// is), and Attachment.Reader decodes them where the bytes are needed, e.g. straight into the
// batch (store.Inbound.Sources). The decoded bytes are exactly Parse's (TestParseDeferred).

// deferFromBytes is the encoded size from which ParseDeferred leaves an attachment encoded;
// smaller ones are decoded as Parse does (their copy costs little).
const deferFromBytes = 64 << 10

// deferredContent is a part's content left encoded: src is the encoded body (a slice of the
// message, or of the cleaned copy of its part), size the length of the decoded content.
type deferredContent struct {
	src  []byte
	b64  bool // base64 (RawStdEncoding, line breaks skipped); else the content is src as it is
	size int
}

// deferBase64 returns body left encoded when decodeBase64 would decode it on its simple path
// (only the alphabet and line breaks up to the last alphabet character, and a length that
// decodes), else nil.
func deferBase64(body []byte) *deferredContent {
	n, last, firstBlank := 0, -1, -1
	for i, c := range body {
		switch b64Value[c] {
		case 0:
			return nil
		case 1:
			n++
			last = i
		default:
			if c != '\r' && c != '\n' && firstBlank < 0 {
				firstBlank = i
			}
		}
	}
	if n%4 == 1 || last < 0 || (firstBlank >= 0 && firstBlank < last) {
		return nil
	}
	return &deferredContent{src: body[:last+1], b64: true, size: base64.RawStdEncoding.DecodedLen(n)}
}

// reader returns the decoded content, read as it is decoded.
func (d *deferredContent) reader() io.Reader {
	if d.b64 {
		return base64.NewDecoder(base64.RawStdEncoding, bytes.NewReader(d.src))
	}
	return bytes.NewReader(d.src)
}

// decode returns the decoded content in a new buffer.
func (d *deferredContent) decode() []byte {
	out := make([]byte, d.size)
	if n, err := io.ReadFull(d.reader(), out); err != nil || n != d.size {
		// deferBase64 left only bodies that decode to size bytes.
		panic(fmt.Sprintf("BUG: deferred content of %d bytes decoded to %d: %v", d.size, n, err))
	}
	return out
}

// Len is the length of the attachment's decoded content: len(Data), or for an attachment that
// ParseDeferred left encoded, what Reader produces.
func (a *Attachment) Len() int {
	if a.deferred != nil {
		return a.deferred.size
	}
	return len(a.Data)
}

// Deferred reports whether ParseDeferred left the attachment encoded: Data is then nil, and
// Reader or Content decode it from the raw message.
func (a *Attachment) Deferred() bool { return a.deferred != nil }

// Reader returns the decoded content: Data, or, for an attachment ParseDeferred left encoded,
// a reader decoding it from the raw message as it is read (Len bytes, then io.EOF). Each call
// starts from the beginning.
func (a *Attachment) Reader() io.Reader {
	if a.deferred != nil {
		return a.deferred.reader()
	}
	return bytes.NewReader(a.Data)
}

// Content returns the decoded content: Data, or, for an attachment ParseDeferred left encoded,
// a new buffer decoded from the raw message.
func (a *Attachment) Content() []byte {
	if a.deferred != nil {
		return a.deferred.decode()
	}
	return a.Data
}

// ParseDeferred is Parse, except that the attachments of deferFromBytes or more whose decoding
// cannot fail are left encoded: their Data is nil and Len, Reader and Content give their bytes,
// the same as Parse's Data. The Message then refers to raw, which must not change while it is
// used. Body texts are decoded as by Parse.
func ParseDeferred(raw []byte, lim Limits) (*Message, error) {
	return parse(raw, lim, true)
}
