package mailparse

import (
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// hostileInput is a 64 KiB input built to make some part of the parser do too much work.
// allocFactor is its allocation budget in bytes per input byte (about 1.5 times what it
// takes). Inputs with many parts are dominated by the 6-8 KiB enmime allocates per part to read
// its header whatever its size (about 18 KiB for the parts whose content enmime decodes, see
// decode.go), which DefaultMaxParts caps.
type hostileInput struct {
	name        string
	raw         []byte
	allocFactor int
}

// fill repeats unit between prefix and suffix up to size bytes.
func fill(prefix, unit, suffix string, size int) []byte {
	var b strings.Builder
	b.WriteString(prefix)
	for b.Len()+len(unit)+len(suffix) <= size {
		b.WriteString(unit)
	}
	b.WriteString(suffix)
	return []byte(b.String())
}

// deepNesting nests multiparts with distinct boundaries, one level per header block.
func deepNesting(size int) []byte {
	var b strings.Builder
	bd := func(i int) string {
		return "bd" + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
	for i := 0; b.Len() < size-200; i++ {
		if i > 0 {
			b.WriteString("--" + bd(i-1) + "\r\n")
		}
		b.WriteString("Content-Type: multipart/mixed; boundary=" + bd(i) + "\r\n\r\n")
	}
	return []byte(b.String())
}

func hostileInputs() []hostileInput {
	const n = 64 << 10
	mp := "Content-Type: multipart/mixed; boundary=b\r\n\r\n"
	return []hostileInput{
		{"many empty parts", fill(mp, "--b\r\n\r\nx\r\n", "--b--\r\n", n), 144},
		{"many parts with decoders", fill(mp, "--b\r\nContent-Type: text/plain; charset=iso-8859-1\r\n"+
			"Content-Transfer-Encoding: quoted-printable\r\n\r\nx=E9\r\n", "--b--\r\n", n), 176},
		// utf-7 is a charset that enmime converts itself (with its 12-25 KiB of buffers).
		{"many parts enmime decodes", fill(mp, "--b\r\nContent-Type: text/plain; charset=utf-7\r\n"+
			"Content-Transfer-Encoding: quoted-printable\r\n\r\nx=E9\r\n", "--b--\r\n", n), 440},
		{"many attachments named alike", fill(mp, "--b\r\nContent-Disposition: attachment; filename=a.pdf\r\n\r\nx\r\n", "", n), 176},
		{"deep nesting, one boundary", fill(mp, "--b\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n", "", n), 184},
		{"deep nesting", deepNesting(n), 48},
		{"boundary-like lines", fill(mp+"--b\r\n\r\n", "--bx\r\n", "", n), 16},
		{"parts without headers", fill(mp, "--b\r\nfoo: bar baz\r\n", "", n), 152},
		{"base64 garbage", fill("Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n", "!", "", n), 4},
		{"base64 high bytes", fill("Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n", "\xc1", "", n), 4},
		{"quoted-printable 8-bit", fill("Content-Type: text/plain\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n", "é", "", n), 16},
		{"content-type parameters", fill("Content-Type: text/plain", "; a=b", "\r\n\r\nx", n), 24},
		{"content-type quotes", fill("Content-Type: text/plain; name=\"", "a\\\"", "\"\r\n\r\nx", n), 24},
		{"disposition parameters", fill("Content-Disposition: attachment", "; filename*0*=x", "\r\n\r\nx", n), 24},
		{"many headers", fill("", "X-A: b\r\n", "\r\nx", n), 24},
		{"long folded header", fill("Subject: a", "\r\n b", "\r\n\r\nx", n), 16},
		{"many addresses", fill("To: a@b.c", ", d@e.f", "\r\n\r\nx", n), 64},
		{"bad addresses", fill("To: a", " <<@", "\r\n\r\nx", n), 24},
		{"many encoded words", fill("Subject: ", "=?utf-8?q?a?= ", "\r\n\r\nx", n), 24},
		{"many references", fill("References: ", "<a@b> ", "\r\n\r\nx", n), 40},
		{"open comments", fill("References: ", "((((", "\r\n\r\nx", n), 24},
		{"utf-7 body", fill("Content-Type: text/plain; charset=utf-7\r\n\r\n", "+AGE-", "", n), 16},
		{"html deep divs", fill("Content-Type: text/html\r\n\r\n", "<div>", "", n), 24},
		{"html tables", fill("Content-Type: text/html\r\n\r\n", "<table><tr><td>", "", n), 24},
		// x/net/html's adoption agency algorithm: the worst case found; maxHTMLToTextBytes caps it.
		{"html misnested formatting", fill("Content-Type: text/html\r\n\r\n", "<p><b><p><i>", "", n), 320},
	}
}

// TestHostileInputBounded asserts that no 64 KiB input makes Parse allocate more than its
// budget, and that the limits hold.
func TestHostileInputBounded(t *testing.T) {
	for _, h := range hostileInputs() {
		t.Run(h.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			start := time.Now()
			m, err := Parse(h.raw, Limits{})
			elapsed := time.Since(start)
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			checkInvariants(t, m, Limits{}.withDefaults())
			alloc := after.TotalAlloc - before.TotalAlloc
			budget := uint64(h.allocFactor * len(h.raw))
			if raceEnabled {
				budget *= 8 // the race runtime allocates several times more (e.g. 9x for fmt)
			}
			t.Logf("%d bytes: allocated %d (%.1f per input byte), %d mallocs, %v",
				len(h.raw), alloc, float64(alloc)/float64(len(h.raw)), after.Mallocs-before.Mallocs, elapsed)
			if alloc > budget {
				t.Errorf("allocated %d bytes, budget %d", alloc, budget)
			}
			if !raceEnabled && elapsed > 2*time.Second {
				t.Errorf("took %v", elapsed)
			}
		})
	}
}

func TestHostileLimitsHit(t *testing.T) {
	m, err := Parse(fill("Content-Type: multipart/mixed; boundary=b\r\n\r\n",
		"--b\r\nContent-Type: application/octet-stream\r\n\r\nx\r\n", "--b--\r\n", 64<<10), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Attachments) != DefaultMaxParts {
		t.Errorf("%d attachments, want the first %d", len(m.Attachments), DefaultMaxParts)
	}
	if !m.PartsTruncated {
		t.Error("PartsTruncated not set")
	}
	hasWarning(t, m, "more than "+strconv.Itoa(DefaultMaxParts)+" MIME parts")

	m, err = Parse(deepNesting(64<<10), Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !m.PartsTruncated {
		t.Error("PartsTruncated not set when nesting was cut")
	}
	hasWarning(t, m, "nested deeper than 10 levels")
}

// TestHTMLToTextCapped: Text is derived from at most maxHTMLToTextBytes of HTML.
func TestHTMLToTextCapped(t *testing.T) {
	raw := fill("Content-Type: text/html\r\n\r\n<p>start</p>", "<p>filler paragraph</p>", "<p>THE END</p>", 2*maxHTMLToTextBytes)
	m, err := Parse(raw, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(m.Text, "start") || strings.Contains(m.Text, "THE END") {
		t.Errorf("Text has %d bytes; want the start only", len(m.Text))
	}
	if !strings.HasSuffix(m.HTML, "<p>THE END</p>") {
		t.Error("HTML was cut")
	}
	hasWarning(t, m, "text derived from the first")
}

// TestInternalCaps hits the caps of limits.go that Limits does not expose.
func TestInternalCaps(t *testing.T) {
	t.Run("media type parameters", func(t *testing.T) {
		// A charset after maxMediaTypeParams parameters is ignored: the text is then read as
		// undeclared (Windows-1252), not as ISO-8859-7 where 0xE9 is "ι".
		params := strings.Repeat("; x=y", maxMediaTypeParams)
		m, err := Parse([]byte("Content-Type: text/plain"+params+"; charset=iso-8859-7\r\n\r\ncaf\xe9"), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "Text", m.Text, "café")
		m, err = Parse([]byte("Content-Type: text/plain; charset=iso-8859-7\r\n\r\ncaf\xe9"), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "Text", m.Text, "cafι")
	})
	t.Run("warnings", func(t *testing.T) {
		m, err := Parse(fill("Content-Type: multipart/mixed; boundary=b\r\n\r\n",
			"--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\nno delimiter\r\n", "--b--\r\n", 8<<10), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Warnings) != maxWarnings+1 || !strings.HasSuffix(m.Warnings[maxWarnings], "more warnings left out") {
			t.Errorf("%d warnings, last %q", len(m.Warnings), m.Warnings[len(m.Warnings)-1])
		}
	})
	t.Run("problems per part", func(t *testing.T) {
		m, err := Parse(fill("Subject: x\r\n", "::bad header line\r\n", "\r\nbody", 4<<10), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Warnings) != maxPartErrors {
			t.Errorf("%d warnings, want %d: %q", len(m.Warnings), maxPartErrors, m.Warnings)
		}
	})
}
