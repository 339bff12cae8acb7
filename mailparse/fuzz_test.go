package mailparse

import (
	"bytes"
	"errors"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzParse: Parse never panics, fails only with its documented errors, returns valid UTF-8
// and safe unique attachment names within the limits, and does bounded work per input.
// Seeds: every fixture, small hostile shapes, and crashers found so far (testdata/fuzz).
//
//	go test -run '^$' -fuzz FuzzParse -fuzztime 2m ./mailparse/
func FuzzParse(f *testing.F) {
	for _, name := range fixtures(f) {
		raw, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	for _, h := range hostileInputs() {
		f.Add(h.raw[:min(len(h.raw), 2048)])
	}
	f.Add([]byte(nested(12, "deep")))
	lim := Limits{MaxParts: 32, MaxDepth: 4, MaxHeaderBytes: 16 << 10}
	f.Fuzz(func(t *testing.T, raw []byte) {
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		m, err := Parse(raw, lim)
		elapsed := time.Since(start)
		runtime.ReadMemStats(&after)
		if err != nil {
			if !errors.Is(err, ErrNotMessage) && !errors.Is(err, ErrHeaderTooLarge) {
				t.Fatalf("unexpected error %v", err)
			}
			if m != nil {
				t.Fatal("message with error")
			}
			return
		}
		checkInvariants(t, m, lim)
		// Per-part buffers (at most 32 parts here) plus the worst per-byte factor (HTML).
		budget := uint64(len(raw))*320 + uint64(lim.MaxParts+1)*64<<10
		if raceEnabled {
			budget *= 8
		}
		if alloc := after.TotalAlloc - before.TotalAlloc; alloc > budget {
			t.Errorf("%d input bytes allocated %d, budget %d", len(raw), alloc, budget)
		}
		if !raceEnabled && elapsed > time.Second+time.Duration(len(raw))*5*time.Microsecond {
			t.Errorf("%d input bytes took %v", len(raw), elapsed)
		}
	})
}

// FuzzBuildRoundTrip: whatever the text fields and attachment, Build succeeds and Parse gives
// them back (normalised as documented).
func FuzzBuildRoundTrip(f *testing.F) {
	f.Add("Re: Your order", "Thanks\n", "<p>Thanks</p>", "invoice.pdf", []byte("%PDF"), false)
	f.Add("", "", "", "", []byte(nil), true)
	f.Add("  =?utf-8?q?x?= \t", "a\rb\r\nc\n", "", "../x", []byte{0, 1, 2}, false)
	f.Add("日本語の件名 "+strings.Repeat("長い", 60), strings.Repeat("日本語", 100), "é", "請求書.pdf", []byte("x"), true)
	f.Add(strings.Repeat("x", 2000), strings.Repeat("y", 2000), strings.Repeat("z ", 2000), strings.Repeat("n", 300), []byte("d"), false)
	f.Fuzz(func(t *testing.T, subject, text, html, filename string, data []byte, inline bool) {
		c := Compose{
			From: "Ann <a@example.com>", To: "b@example.com", Subject: subject, Text: text, HTML: html,
			Date: testDate,
		}
		if filename != "" || data != nil {
			c.Attachments = []Attachment{{Filename: filename, ContentType: "application/octet-stream", Data: data, Inline: inline}}
		}
		raw, err := Build(c)
		if err != nil {
			t.Fatalf("Build: %v", err)
		}
		m, err := Parse(raw, Limits{})
		if err != nil {
			t.Fatalf("Parse: %v\n%q", err, raw)
		}
		if len(m.Warnings) > 0 {
			t.Errorf("warnings %q for\n%q", m.Warnings, raw)
		}
		wantSubject := strings.ToValidUTF8(subject, "\uFFFD")
		if m.Subject != wantSubject {
			t.Errorf("Subject = %q, want %q", m.Subject, wantSubject)
		}
		wantText, wantHTML := lf(strings.ToValidUTF8(text, "\uFFFD")), lf(strings.ToValidUTF8(html, "\uFFFD"))
		if m.HTML != wantHTML {
			t.Errorf("HTML = %q, want %q", m.HTML, wantHTML)
		}
		if (wantText != "" || wantHTML == "") && m.Text != wantText {
			t.Errorf("Text = %q, want %q", m.Text, wantText)
		}
		if len(c.Attachments) > 0 {
			if len(m.Attachments) != 1 {
				t.Fatalf("attachments = %d", len(m.Attachments))
			}
			a := m.Attachments[0]
			if a.Filename != sanitizeFilename(filename, "application/octet-stream") || !bytes.Equal(a.Data, data) || a.Inline != inline {
				t.Errorf("attachment %q %q inline=%v, want %q %q inline=%v", a.Filename, a.Data, a.Inline,
					sanitizeFilename(filename, "application/octet-stream"), data, inline)
			}
		}
		if !utf8.Valid(raw) {
			t.Errorf("Build output not UTF-8")
		}
	})
}
