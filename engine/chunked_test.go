package engine

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"testing"

	"github.com/lesismal/nbio/mempool"
	"github.com/lesismal/nbio/nbhttp"
)

// checkedPool is an nbio allocator that never reuses a buffer and
// reports every use of one after its Free (a double free, an append):
// the mistakes that, with the real pool, hand one buffer to two owners.
type checkedPool struct {
	mu    sync.Mutex
	freed map[*[]byte]bool
	errs  []string
}

func (p *checkedPool) check(b *[]byte, what string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.freed[b] {
		p.errs = append(p.errs, what+" of a freed buffer")
	}
}

func (p *checkedPool) Malloc(size int) *[]byte { b := make([]byte, size); return &b }
func (p *checkedPool) Realloc(b *[]byte, size int) *[]byte {
	p.check(b, "Realloc")
	*b = append((*b)[:0], make([]byte, size)...)[:size]
	return b
}
func (p *checkedPool) Append(b *[]byte, more ...byte) *[]byte {
	p.check(b, "Append")
	*b = append(*b, more...)
	return b
}
func (p *checkedPool) AppendString(b *[]byte, more string) *[]byte {
	p.check(b, "AppendString")
	*b = append(*b, more...)
	return b
}
func (p *checkedPool) Free(b *[]byte) {
	p.check(b, "Free")
	p.mu.Lock()
	p.freed[b] = true
	p.mu.Unlock()
}

// recordConn is a net.Conn keeping a copy of what is written to it.
type recordConn struct {
	net.Conn
	out bytes.Buffer
}

func (c *recordConn) Write(b []byte) (int, error) { return c.out.Write(b) }

// A chunked answer (no Content-Length: pprof's trace and profiles) written
// in many small pieces must not touch a buffer it gave back: nbhttp's
// writeChunk freed its cache buffer after sending it once 64 KiB were
// reached, then appended the next chunk to it and freed it again. With
// the real pool that buffer then served other requests too: a 5 s
// /debug/pprof/trace under load gave a corrupt trace, inbound requests
// answered 400 "malformed JSON at byte 1: invalid character 'H'", and
// events stored under another account's inbox.
func TestChunkedAnswerDoesNotReuseAFreedBuffer(t *testing.T) {
	pool := &checkedPool{freed: map[*[]byte]bool{}}
	old := mempool.DefaultMemPool
	mempool.DefaultMemPool = pool
	defer func() { mempool.DefaultMemPool = old }()

	c := &recordConn{}
	req, _ := http.NewRequest("GET", "/debug/pprof/trace", nil)
	res := nbhttp.NewResponse(nbhttp.NewParser(c, nil, nil, false, nil), req)
	var want bytes.Buffer
	for i := 0; i < 200; i++ { // 200 × 3 KiB: the 64 KiB mark is passed several times
		piece := bytes.Repeat([]byte{byte('a' + i%26)}, 3000)
		want.Write(piece)
		if _, err := res.Write(piece); err != nil {
			t.Fatal(err)
		}
	}
	res.Flush()
	if len(pool.errs) > 0 {
		t.Fatalf("%d misuses of freed buffers, the first: %s", len(pool.errs), pool.errs[0])
	}
	_, body, ok := bytes.Cut(c.out.Bytes(), []byte("\r\n\r\n"))
	if !ok {
		t.Fatalf("no head in %q", c.out.Bytes()[:min(200, c.out.Len())])
	}
	got, err := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(body)))
	if err != io.ErrUnexpectedEOF && err != nil { // no last chunk: the handler has not returned
		t.Fatal(err)
	}
	if !bytes.Equal(got, want.Bytes()) {
		t.Fatalf("chunked body differs: %d bytes, want %d", len(got), want.Len())
	}
}
