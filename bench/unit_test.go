package bench

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestSeqSet(t *testing.T) {
	f := func(name string, seqs []uint32, fresh, dup, uncertain int) {
		t.Helper()
		var s seqSet
		var n [3]int
		for _, q := range seqs {
			n[s.add(q)]++
		}
		if n[seqFresh] != fresh || n[seqDuplicate] != dup || n[seqUncertain] != uncertain {
			t.Errorf("%s: fresh/dup/uncertain = %v, want %d/%d/%d", name, n, fresh, dup, uncertain)
		}
	}
	seq := func(from, to uint32) []uint32 {
		var out []uint32
		for i := from; i < to; i++ {
			out = append(out, i)
		}
		return out
	}
	f("empty", nil, 0, 0, 0)
	f("in order", seq(0, 1000), 1000, 0, 0)
	f("repeat below watermark", append(seq(0, 200), 5, 63, 64, 199), 200, 4, 0)
	f("repeat inside window", []uint32{0, 2, 2, 70, 70, 1}, 4, 2, 0)
	f("reversed", []uint32{9, 8, 7, 6, 5, 4, 3, 2, 1, 0, 4}, 10, 1, 0)
	f("holes", append(seq(1, 300), seq(1, 300)...), 299, 299, 0)
	// A hole at 0 and one arrival far beyond the window: the first words
	// are written off; 0 arriving late is then uncertain, not a duplicate.
	f("window write-off", []uint32{1, seqWindowWords*64 + 5, 0, 1}, 2, 0, 2)
	f("huge seq", []uint32{1<<32 - 1, 1<<32 - 1}, 1, 1, 0)

	// The watermark frees the window: in-order arrivals keep it small.
	var s seqSet
	for i := uint32(0); i < 100000; i++ {
		s.add(i)
	}
	if len(s.win) > 1 || s.base < 99900 {
		t.Errorf("window not released: base %d, %d words", s.base, len(s.win))
	}
}

func TestTracker(t *testing.T) {
	tr := newTracker([]int32{3, 7})
	if v, unexp := tr.add(3, 0); unexp || v != seqFresh {
		t.Fatalf("first arrival: %v %v", v, unexp)
	}
	if v, _ := tr.add(3, 0); v != seqDuplicate {
		t.Fatalf("repeat: %v", v)
	}
	if v, _ := tr.add(7, 0); v != seqFresh {
		t.Fatalf("another inbox, same seq: %v", v)
	}
	if _, unexp := tr.add(4, 0); !unexp {
		t.Fatal("an inbox outside the subscription is not unexpected")
	}
}

func TestMarker(t *testing.T) {
	f := func(m marker) {
		t.Helper()
		b := appendMarker([]byte(`{"subject":"`), m)
		b = append(b, `","x":1}`...)
		got, ok := findMarker(b)
		if !ok || got != m {
			t.Errorf("round trip of %+v: %+v %v (%s)", m, got, ok, b)
		}
	}
	f(marker{})
	f(marker{run: 0xdeadbeef, inbox: 12, seq: 34, sent: 1_700_000_000_123_456_789})
	f(marker{run: 1, inbox: 1<<31 - 1, seq: 1<<32 - 1, sent: 1<<63 - 1})
	f(marker{run: 7, inbox: 3, seq: 9, sent: 1_700_000_000_000_000_000, lag: 123456})

	bad := func(s string) {
		t.Helper()
		if m, ok := findMarker([]byte(s)); ok {
			t.Errorf("%q parsed as %+v", s, m)
		}
	}
	bad("")
	bad("mwb1.")
	bad("mwb1.0000000g.1.2.3")
	bad("mwb1.00000001.1.2")
	bad("mwb1.00000001.1..3")
	bad("mwb1.0000001.1.2.3")
	bad("mwb1.00000001.99999999999.2.3")

	if id := findEventID([]byte(`{"event":"message.received","event_id":"evt_01ABC","x":1}`)); string(id) != "evt_01ABC" {
		t.Errorf("event id: %q", id)
	}
	if id := findEventID([]byte(`{"event_id":1}`)); id != nil {
		t.Errorf("event id of a malformed payload: %q", id)
	}
}

func FuzzFindMarker(f *testing.F) {
	f.Add([]byte("mwb1.deadbeef.1.2.3"))
	f.Add([]byte(`{"subject":"mwb1.00000000.0.0.0"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := findMarker(b)
		if !ok {
			return
		}
		again, ok := findMarker(appendMarker(nil, m))
		if !ok || again != m {
			t.Fatalf("%+v does not round-trip: %+v", m, again)
		}
	})
}

// serverFrame appends an unmasked server frame (the tests play the
// server).
func serverFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch l := len(payload); {
	case l <= 125:
		dst = append(dst, byte(l))
	case l <= 0xFFFF:
		dst = append(dst, 126, byte(l>>8), byte(l))
	default:
		dst = append(dst, 127, 0, 0, 0, 0, byte(l>>24), byte(l>>16), byte(l>>8), byte(l))
	}
	return append(dst, payload...)
}

func TestParseFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 1000, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte{'a'}, n)
		b := serverFrame(nil, opText, payload)
		for cut := 0; cut < len(b); cut += max(1, len(b)/7) {
			if _, err := parseFrame(b[:cut]); err != errNeedMore {
				t.Fatalf("len %d cut %d: %v, want errNeedMore", n, cut, err)
			}
		}
		f, err := parseFrame(append(b, 0x89, 0))
		if err != nil || f.op != opText || !f.fin || f.size != len(b) || !bytes.Equal(f.payload, payload) {
			t.Fatalf("len %d: %+v %v", n, f, err)
		}
	}
	if _, err := parseFrame([]byte{0x81, 0x80, 1, 2, 3, 4}); err != errMaskedFrame {
		t.Errorf("masked server frame: %v", err)
	}
	if _, err := parseFrame([]byte{0x81, 127, 0xff, 0, 0, 0, 0, 0, 0, 0}); err != errFrameTooLarge {
		t.Errorf("huge frame: %v", err)
	}
}

func TestClientFrame(t *testing.T) {
	m := [4]byte{1, 2, 3, 4}
	for _, n := range []int{0, 5, 125, 126, 70000} {
		payload := bytes.Repeat([]byte{'z'}, n)
		b := appendClientFrame(nil, opText, payload, m)
		if b[0] != 0x81 || b[1]&0x80 == 0 {
			t.Fatalf("len %d: header % x", n, b[:2])
		}
		// Unmask it as a server would.
		hl := 2 + map[bool]int{true: 2}[n > 125 && n <= 0xFFFF] + map[bool]int{true: 8}[n > 0xFFFF]
		got := append([]byte(nil), b[hl+4:]...)
		for i := range got {
			got[i] ^= b[hl+i&3]
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("len %d: payload does not unmask", n)
		}
	}
}

func TestParseHandshake(t *testing.T) {
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + wsAccept + "\r\n\r\n"
	n, err := parseHandshake([]byte(ok + "\x81\x00"))
	if err != nil || n != len(ok) {
		t.Fatalf("101: %d %v", n, err)
	}
	if _, err := parseHandshake([]byte(ok[:20])); err != errNeedMore {
		t.Errorf("partial: %v", err)
	}
	if _, err := parseHandshake([]byte(strings.Replace(ok, wsAccept, "bad", 1))); err != errBadHandshake {
		t.Errorf("wrong accept: %v", err)
	}
	_, err = parseHandshake([]byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"))
	if he, isHE := err.(*handshakeError); !isHE || he.status != 503 {
		t.Errorf("503: %v", err)
	}
	req := string(appendHandshake(nil, "127.0.0.1:1", "/v1/ws", "om_k"))
	for _, want := range []string{"GET /v1/ws HTTP/1.1\r\n", "Authorization: Bearer om_k\r\n", "Sec-WebSocket-Key: " + wsKey + "\r\n"} {
		if !strings.Contains(req, want) {
			t.Errorf("handshake lacks %q", want)
		}
	}
}

func TestParseMixAndSources(t *testing.T) {
	m, err := ParseMix("all=1,inbox=2,type=1")
	if err != nil {
		t.Fatal(err)
	}
	n := map[string]int{}
	for i := 0; i < 4000; i++ {
		n[m.kind(i)]++
	}
	if n["all"] < 950 || n["all"] > 1050 || n["inbox"] < 1950 || n["inbox"] > 2050 {
		t.Errorf("kinds: %v", n)
	}
	for _, bad := range []string{"", "all", "all=x", "other=1", "all=0"} {
		if _, err := ParseMix(bad); err == nil {
			t.Errorf("ParseMix(%q) accepted", bad)
		}
	}
	srcs, err := parseSources("127.0.1.0/29,127.0.0.1")
	if err != nil || len(srcs) != 8 || srcs[0].String() != "127.0.1.1" || srcs[7].String() != "127.0.0.1" {
		t.Errorf("sources: %v %v", srcs, err)
	}
	for _, bad := range []string{"10.0.0.1", "127.0.0.0/8", "::1", "x"} {
		if _, err := parseSources(bad); err == nil {
			t.Errorf("parseSources(%q) accepted", bad)
		}
	}
}

func TestUpdateDoc(t *testing.T) {
	p := filepath.Join(t.TempDir(), "B.md")
	if err := UpdateDoc(p, "first"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	if !strings.Contains(string(b), docBegin+"\nfirst\n"+docEnd) {
		t.Fatalf("created: %s", b)
	}
	other := "# Benchmarks\n\nmethod by someone else\n\n" + docBegin + "\nold\n" + docEnd + "\n\n## Long runs\nkept\n"
	if err := os.WriteFile(p, []byte(other), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(p, "new\nlines\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	want := "# Benchmarks\n\nmethod by someone else\n\n" + docBegin + "\nnew\nlines\n" + docEnd + "\n\n## Long runs\nkept\n"
	if string(b) != want {
		t.Fatalf("got\n%s\nwant\n%s", b, want)
	}
	// A file without markers gets them appended.
	if err := os.WriteFile(p, []byte("# Other\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := UpdateDoc(p, "x"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(p)
	if string(b) != "# Other\n\n"+docBegin+"\nx\n"+docEnd+"\n" {
		t.Fatalf("appended: %q", b)
	}
}

func TestSummarize(t *testing.T) {
	h := newHist()
	for v := int64(1); v <= 1000; v++ {
		recordClamped(h, v*1000) // 1..1000 ms
	}
	s := summarize(h, true)
	if s.Count != 1000 || s.P50 < 499 || s.P50 > 501 || s.P99 < 989 || s.P99 > 991 || s.Max < 999 || s.Max > 1001 {
		t.Errorf("summary: %+v", s)
	}
	if last := s.Curve[len(s.Curve)-1]; last.Percentile != 100 || last.Ms != s.Max {
		t.Errorf("curve ends at %+v", last)
	}
	a := newHist()
	recordClamped(a, 5)
	b := a.Clone()
	recordClamped(b, 7000)
	if d := histDiff(a, b); d.TotalCount() != 1 || d.Max() < 6990 {
		t.Errorf("diff: count %d max %d", d.TotalCount(), d.Max())
	}
}

func TestHelp(t *testing.T) {
	for _, name := range []string{"connect", "fanout", "webhook", "ingest", "replay", "churn", "standard"} {
		var out, errb bytes.Buffer
		if code := Main(context.Background(), []string{name, "--help"}, &out, &errb); code != 0 {
			t.Errorf("%s --help: exit %d", name, code)
		}
		if !strings.Contains(errb.String(), "Usage: mailwire-bench "+name) || !strings.Contains(errb.String(), "-server") {
			t.Errorf("%s --help:\n%s", name, errb.String())
		}
	}
	var out, errb bytes.Buffer
	if code := Main(context.Background(), []string{"nosuch"}, &out, &errb); code != 2 {
		t.Errorf("unknown scenario: exit %d", code)
	}
	if code := Main(context.Background(), []string{"fanout", "--conns", "0", "--via", "ftp"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "--conns") || !strings.Contains(errb.String(), "--via") {
		t.Errorf("invalid flags: exit %d: %s", code, errb.String())
	}
}

// The webhook and ingest scenarios start no pools: their client CPU is
// this process's (it used to read 0 %).
func TestClientPIDs(t *testing.T) {
	me := os.Getpid()
	f := func(pools []int, want []int) {
		t.Helper()
		if got := clientPIDs(pools); !slices.Equal(got, want) {
			t.Fatalf("clientPIDs(%v) = %v, want %v", pools, got, want)
		}
	}
	f(nil, []int{me})
	f([]int{me}, []int{me})
	f([]int{me + 1, me + 2, me + 1}, []int{me, me + 1, me + 2})
}
