package mailparse

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"reflect"
	"runtime"
	"strings"
	"testing"
)

// deferredInputs are messages with large parts of every shape ParseDeferred treats apart.
func deferredInputs() map[string][]byte {
	part := func(hdr string, body []byte) []byte {
		return append([]byte("--b\r\n"+hdr+"\r\n\r\n"), append(body, "\r\n"...)...)
	}
	multi := func(parts ...[]byte) []byte {
		m := []byte("From: a@example.com\r\nTo: b@example.com\r\nSubject: big\r\nMIME-Version: 1.0\r\n" +
			"Content-Type: multipart/mixed; boundary=b\r\n\r\n")
		for _, p := range parts {
			m = append(m, p...)
		}
		return append(m, "--b--\r\n"...)
	}
	att := "Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=x.bin\r\nContent-Transfer-Encoding: base64"
	text := part("Content-Type: text/plain", []byte("hello"))
	in := map[string][]byte{}
	for _, n := range []int{40000, deferFromBytes, 1 << 20, 1<<20 + 1, 1<<20 + 2, 300001} {
		in[fmt.Sprintf("base64-%d", n)] = multi(text, part(att, base64Body(payload(n, byte(n)))))
	}
	b := base64Body(payload(200<<10, 1))
	in["base64-blank-inside"] = multi(text, part(att, append(append(b[:1000:1000], ' '), b[1000:]...)))
	in["base64-padding-blank-after"] = multi(text, part(att, append(bytes.Clone(b), " \t=\r\n"...)))
	in["base64-invalid-char"] = multi(text, part(att, append(append(b[:1000:1000], '*'), b[1000:]...)))
	in["base64-dangling"] = multi(text, part(att, append(bytes.Clone(b), 'Q')))
	in["base64-no-breaks"] = multi(text, part(att, []byte(strings.ReplaceAll(string(b), "\r\n", ""))))
	in["base64-lf-only"] = multi(text, part(att, []byte(strings.ReplaceAll(string(b), "\r\n", "\n"))))
	big := bytes.Repeat([]byte("A line of text.\r\n"), 10000)
	in["7bit-attachment"] = multi(text, part("Content-Type: application/octet-stream\r\nContent-Disposition: attachment; filename=a.txt", big))
	in["binary-utf8-text-attachment"] = multi(text, part("Content-Type: text/plain; charset=utf-8\r\nContent-Disposition: attachment; filename=a.txt\r\nContent-Transfer-Encoding: binary", big))
	in["latin1-text-attachment"] = multi(text, part("Content-Type: text/plain; charset=iso-8859-1\r\nContent-Disposition: attachment; filename=a.txt\r\nContent-Transfer-Encoding: base64", b))
	in["base64-text-body"] = multi(part("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64", base64Body(big)))
	in["base64-html-body"] = multi(part("Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64", base64Body(big)))
	in["big-text-body"] = multi(part("Content-Type: text/plain", big))
	in["inline-image"] = multi(text, part("Content-Type: image/png\r\nContent-ID: <i@x>\r\nContent-Transfer-Encoding: base64", b))
	in["no-disposition-pdf"] = multi(text, part("Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64", b))
	in["single-part-pdf"] = append([]byte("From: a@example.com\r\nMIME-Version: 1.0\r\nContent-Type: application/pdf\r\n"+
		"Content-Transfer-Encoding: base64\r\n\r\n"), b...)
	in["attachments200"] = mimeWithAttachments(200, 75<<10)
	return in
}

// materialized is m with every deferred attachment decoded into Data, as Parse returns it.
func materialized(t *testing.T, m *Message) (*Message, int) {
	t.Helper()
	c := *m
	c.Attachments = append([]Attachment{}, m.Attachments...)
	deferred := 0
	for i := range c.Attachments {
		a := &c.Attachments[i]
		r, err := io.ReadAll(a.Reader())
		if err != nil || len(r) != a.Len() {
			t.Fatalf("attachment %d: Reader gave %d bytes (%v), Len %d", i, len(r), err, a.Len())
		}
		if got := a.Content(); !bytes.Equal(got, r) {
			t.Fatalf("attachment %d: Content and Reader differ", i)
		}
		if a.Deferred() {
			deferred++
			if a.Data != nil {
				t.Fatalf("attachment %d: deferred with Data", i)
			}
		}
		a.Data, a.deferred = r, nil
	}
	return &c, deferred
}

// TestParseDeferred: ParseDeferred returns what Parse returns, with large attachments decoded
// on demand to the same bytes; bodies are never deferred.
func TestParseDeferred(t *testing.T) {
	inputs := deferredInputs()
	for _, name := range fixtures(t) {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		inputs[name] = raw
	}
	wantDeferred := map[string]int{
		"base64-40000": 0, "base64-65536": 1, "base64-1048576": 1, "base64-1048577": 1, "base64-1048578": 1,
		"base64-300001": 1, "base64-blank-inside": 0, "base64-padding-blank-after": 1, "base64-invalid-char": 1,
		"base64-dangling": 0, "base64-no-breaks": 1, "base64-lf-only": 1, "7bit-attachment": 1,
		"binary-utf8-text-attachment": 1, "latin1-text-attachment": 0, "base64-text-body": 0,
		"base64-html-body": 0, "big-text-body": 0, "inline-image": 1, "no-disposition-pdf": 1,
		"single-part-pdf": 1, "attachments200": 200,
	}
	for name := range wantDeferred {
		if inputs[name] == nil {
			t.Fatalf("no input %s", name)
		}
	}
	for name, raw := range inputs {
		want, err1 := Parse(raw, Limits{})
		got, err2 := ParseDeferred(raw, Limits{})
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("%s: Parse %v, ParseDeferred %v", name, err1, err2)
		}
		if err1 != nil {
			continue
		}
		m, n := materialized(t, got)
		if !reflect.DeepEqual(m, want) {
			t.Errorf("%s: ParseDeferred differs from Parse", name)
		}
		if w, ok := wantDeferred[name]; ok && n != w {
			t.Errorf("%s: %d attachments deferred, want %d", name, n, w)
		}
	}
}

// TestParseDeferredAllocs: ParseDeferred does not decode a large attachment (Parse allocates
// its 15 MiB; ParseDeferred, before this, did too).
func TestParseDeferredAllocs(t *testing.T) {
	raw := mimeWithAttachments(1, 15<<20)
	alloc := func(parse func([]byte, Limits) (*Message, error)) uint64 {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		m, err := parse(raw, Limits{})
		runtime.ReadMemStats(&after)
		if err != nil || len(m.Attachments) != 1 {
			t.Fatalf("%v, %d attachments", err, len(m.Attachments))
		}
		return after.TotalAlloc - before.TotalAlloc
	}
	full, lazy := alloc(Parse), alloc(ParseDeferred)
	t.Logf("Parse allocated %.1f MiB, ParseDeferred %.2f MiB", float64(full)/(1<<20), float64(lazy)/(1<<20))
	if full < 15<<20 || lazy > 1<<20 {
		t.Errorf("Parse allocated %d bytes, ParseDeferred %d: want ≥ 15 MiB and ≤ 1 MiB", full, lazy)
	}
}
