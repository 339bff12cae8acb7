package mailparse

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden.json from the current output")

// goldenMessage is the golden-file form of a Message: attachments by size and digest.
type goldenMessage struct {
	From        string             `json:"from"`
	To          []string           `json:"to"`
	Cc          []string           `json:"cc"`
	Subject     string             `json:"subject"`
	Text        string             `json:"text"`
	HTML        string             `json:"html"`
	MessageID   string             `json:"messageId"`
	InReplyTo   []string           `json:"inReplyTo"`
	References  []string           `json:"references"`
	Date        string             `json:"date"`
	Attachments []goldenAttachment `json:"attachments"`
	Warnings    []string           `json:"warnings"`
}

type goldenAttachment struct {
	Filename    string `json:"filename"`
	ContentType string `json:"contentType"`
	Size        int    `json:"size"`
	SHA256      string `json:"sha256"`
	Inline      bool   `json:"inline"`
}

func toGolden(m *Message) goldenMessage {
	g := goldenMessage{
		From: m.From, To: m.To, Cc: m.Cc, Subject: m.Subject, Text: m.Text, HTML: m.HTML,
		MessageID: m.MessageID, InReplyTo: m.InReplyTo, References: m.References,
		Attachments: []goldenAttachment{}, Warnings: m.Warnings,
	}
	if !m.Date.IsZero() {
		g.Date = m.Date.Format(time.RFC3339)
	}
	for _, a := range m.Attachments {
		sum := sha256.Sum256(a.Data)
		g.Attachments = append(g.Attachments, goldenAttachment{
			Filename: a.Filename, ContentType: a.ContentType, Size: len(a.Data),
			SHA256: hex.EncodeToString(sum[:8]), Inline: a.Inline,
		})
	}
	return g
}

func fixtures(t testing.TB) []string {
	files, err := filepath.Glob("testdata/*.eml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no fixtures: %v", err)
	}
	return files
}

func parseFixture(t *testing.T, name string) *Message {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(raw, Limits{})
	if err != nil {
		t.Fatalf("Parse(%s): %v", name, err)
	}
	checkInvariants(t, m, Limits{}.withDefaults())
	return m
}

// TestParseGolden compares every fixture's parse with testdata/NAME.golden.json (go test
// -run TestParseGolden -update rewrites them; review the diff).
func TestParseGolden(t *testing.T) {
	for _, f := range fixtures(t) {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			var buf bytes.Buffer
			enc := json.NewEncoder(&buf)
			enc.SetEscapeHTML(false)
			enc.SetIndent("", "  ")
			if err := enc.Encode(toGolden(parseFixture(t, name))); err != nil {
				t.Fatal(err)
			}
			got := buf.Bytes()
			golden := strings.TrimSuffix(f, ".eml") + ".golden.json"
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s differs from %s:\n%s", name, golden, got)
			}
		})
	}
}

// TestParseFixtures states what each fixture is for; the golden files pin the rest.
func TestParseFixtures(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		m := parseFixture(t, "plain.eml")
		eq(t, "From", m.From, "Alice Example <alice@example.com>")
		eqs(t, "To", m.To, "agent@mail.example.com", `"Support, Team" <support@mail.example.com>`)
		eqs(t, "Cc", m.Cc, "Bob <bob@example.org>")
		eq(t, "Subject", m.Subject, "Your order #1234")
		eq(t, "Text", m.Text, "Hi,\n\nThanks for following up. My order number is 1234.\n\n-- \nAlice\n")
		eq(t, "HTML", m.HTML, "")
		eq(t, "MessageID", m.MessageID, "<plain-1@example.com>")
		eq(t, "Date", m.Date.UTC().Format(time.RFC3339), "2026-02-24T10:05:00Z")
		noWarnings(t, m)
	})
	t.Run("undeclared UTF-8, LF line endings, no MIME headers", func(t *testing.T) {
		m := parseFixture(t, "plain_lf_undeclared_utf8.eml")
		eq(t, "Text", m.Text, "Grüße aus München — this body is UTF-8 but declares nothing.\n")
		noWarnings(t, m)
	})
	t.Run("HTML only: text derived", func(t *testing.T) {
		m := parseFixture(t, "html_only.eml")
		if !strings.Contains(m.HTML, "<h1>Weekly news</h1>") {
			t.Errorf("HTML = %q", m.HTML)
		}
		for _, want := range []string{"Weekly news", "Hello *world*", "https://example.com/more"} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("derived Text %q lacks %q", m.Text, want)
			}
		}
		if strings.Contains(m.Text, "color: red") {
			t.Errorf("derived Text contains the style sheet: %q", m.Text)
		}
		noWarnings(t, m)
	})
	t.Run("multipart/alternative", func(t *testing.T) {
		m := parseFixture(t, "alternative.eml")
		eq(t, "Text", m.Text, "Plain version.")
		eq(t, "HTML", m.HTML, "<p>HTML version.</p>")
		noWarnings(t, m)
	})
	t.Run("mixed with related, alternative, PDF and images", func(t *testing.T) {
		m := parseFixture(t, "mixed_attachments.eml")
		eq(t, "Text", m.Text, "See the invoice attached.")
		eq(t, "HTML", m.HTML, `<p>See the invoice attached. <img src="cid:logo@x"></p>`)
		atts(t, m, "attachment.png image/png inline", "invoice.pdf application/pdf", "photo.png image/png inline")
		if !bytes.HasPrefix(m.Attachments[1].Data, []byte("%PDF-1.4")) {
			t.Errorf("PDF data = %q", m.Attachments[1].Data)
		}
		if !bytes.HasPrefix(m.Attachments[0].Data, []byte("\x89PNG\r\n")) {
			t.Errorf("PNG data = %q", m.Attachments[0].Data)
		}
		noWarnings(t, m)
	})
	t.Run("quoted-printable", func(t *testing.T) {
		m := parseFixture(t, "quoted_printable.eml")
		eq(t, "Text", m.Text, "Café crème for everyone. This line is long enough that it needs a soft line break in quoted-printable.\nTrailing = sign and tab\tend.\n")
	})
	t.Run("base64 bodies", func(t *testing.T) {
		m := parseFixture(t, "base64_body.eml")
		eq(t, "Text", m.Text, "Base64 plain body: naïve café.\nSecond line.\n")
		eq(t, "HTML", m.HTML, "<p>Base64 <i>HTML</i> body: naïve café.</p>")
	})
	t.Run("ISO-8859-1 subject, From and body", func(t *testing.T) {
		m := parseFixture(t, "iso8859_1.eml")
		eq(t, "From", m.From, "François Léger <francois@example.fr>")
		eq(t, "Subject", m.Subject, "Café crème brûlée")
		eq(t, "Text", m.Text, "Voilà, le café est prêt. Grüße aus Köln, señor.\n")
		noWarnings(t, m)
	})
	t.Run("Shift_JIS subject and body, ISO-2022-JP name", func(t *testing.T) {
		m := parseFixture(t, "shift_jis.eml")
		eq(t, "From", m.From, "山田太郎 <taro@example.jp>")
		eq(t, "Subject", m.Subject, "お問い合わせの件")
		eq(t, "Text", m.Text, "日本語のテストです。よろしくお願いします。\n")
		noWarnings(t, m)
	})
	t.Run("encoded-word display names", func(t *testing.T) {
		m := parseFixture(t, "encoded_from.eml")
		eq(t, "From", m.From, "Jörg Müller <joerg@example.de>")
		eqs(t, "To", m.To, "张三 <zhang@example.cn>", "agent@mail.example.com")
		eqs(t, "Cc", m.Cc, "Ana María <ana@example.es>", "€uro Desk <euro@example.com>")
		eq(t, "Subject", m.Subject, "Grüße und mehr plain tail")
	})
	t.Run("Windows-1252, ISO-2022-JP, EUC-KR and GB2312 bodies", func(t *testing.T) {
		m := parseFixture(t, "charsets.eml")
		eq(t, "Subject", m.Subject, "안녕你好")
		for _, want := range []string{"€5 “quoted” — dash.", "こんにちは世界", "안녕하세요", "你好，世界"} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("Text %q lacks %q", m.Text, want)
			}
		}
		noWarnings(t, m)
	})
	t.Run("RFC 2231 and encoded-word filenames", func(t *testing.T) {
		m := parseFixture(t, "rfc2231.eml")
		atts(t, m, "請求書_2026年2月分_株式会社サンプル.pdf application/pdf", "données é.csv text/csv")
		eq(t, "csv", string(m.Attachments[1].Data), "a,b\n1,2\n")
	})
	t.Run("duplicate attachment names", func(t *testing.T) {
		m := parseFixture(t, "duplicate_names.eml")
		atts(t, m, "report.pdf application/pdf", "report (2).pdf application/pdf",
			"report (2) (2).pdf application/pdf", "report (3).pdf application/pdf")
		for i, a := range m.Attachments {
			if !bytes.HasSuffix(a.Data, []byte{'0' + byte(i)}) {
				t.Errorf("attachment %d has the data of another", i)
			}
		}
	})
	t.Run("unsafe attachment names", func(t *testing.T) {
		m := parseFixture(t, "unsafe_names.eml")
		long := strings.Repeat("x", maxFilenameBytes-len(".pdf")) + ".pdf"
		atts(t, m, "passwd application/octet-stream", "evil.exe application/octet-stream",
			"htaccess application/octet-stream", "invoicefdp.exe application/octet-stream",
			long+" application/octet-stream", "attachment.bin application/octet-stream",
			"attachment.gif image/gif")
	})
	t.Run("malformed tree is salvaged", func(t *testing.T) {
		m := parseFixture(t, "malformed.eml")
		eq(t, "Subject", m.Subject, "Malformed MIME tree")
		for _, want := range []string{
			"First part survives.",
			"Second part: its boundary never appears, so this is salvaged as text.",
			"Third part with bad base64.",
			"Last part without headers and without the closing boundary.",
		} {
			if !strings.Contains(m.Text, want) {
				t.Errorf("Text %q lacks %q", m.Text, want)
			}
		}
		atts(t, m, "blob.bin application/octet-stream")
		eq(t, "blob", string(m.Attachments[0].Data), "\x00\x01\x02\x03")
		for _, want := range []string{`boundary "never-appears" never appears`, "invalid characters in base64",
			"part 5:", `closing boundary "outer" missing`} {
			hasWarning(t, m, want)
		}
	})
	t.Run("declared boundary never appears at the top", func(t *testing.T) {
		m := parseFixture(t, "no_boundary.eml")
		eq(t, "Text", m.Text, "Just text; the boundary never appears.\n")
		hasWarning(t, m, "never appears")
	})
	t.Run("no Message-ID", func(t *testing.T) {
		m := parseFixture(t, "no_message_id.eml")
		eq(t, "MessageID", m.MessageID, "")
		noWarnings(t, m)
	})
	t.Run("reply with In-Reply-To and References", func(t *testing.T) {
		m := parseFixture(t, "reply.eml")
		eqs(t, "InReplyTo", m.InReplyTo, "<original@message.id>")
		eqs(t, "References", m.References, "<root@example.com>", "<middle@example.com>",
			"<missing-brackets@example.com>", "<original@message.id>")
	})
	t.Run("undeclared 8-bit text falls back to Windows-1252", func(t *testing.T) {
		m := parseFixture(t, "undeclared_latin1.eml")
		eq(t, "Text", m.Text, "Prix: 10 € — très cher.\n")
		hasWarning(t, m, "windows-1252")
		eq(t, "Date", m.Date.Format(time.RFC3339), "2026-02-24T10:22:00Z")
	})
}

func TestParseErrors(t *testing.T) {
	f := func(in string, lim Limits, want error) {
		t.Helper()
		m, err := Parse([]byte(in), lim)
		if !errors.Is(err, want) || m != nil {
			t.Errorf("Parse(%.40q) = %v, %v; want %v", in, m, err, want)
		}
	}
	f("", Limits{}, ErrNotMessage)
	f(" \r\n\t\n", Limits{}, ErrNotMessage)
	f("\r\nFrom: a@b\r\n", Limits{}, ErrNotMessage)
	f("Hello world, no header here.\r\n", Limits{}, ErrNotMessage)
	f(" Subject: starts with a blank\r\n\r\nx", Limits{}, ErrNotMessage)
	f(":empty name\r\n\r\nx", Limits{}, ErrNotMessage)
	f("Subject: "+strings.Repeat("x", 100)+"\r\n\r\nbody", Limits{MaxHeaderBytes: 64}, ErrHeaderTooLarge)
	f("Subject: "+strings.Repeat("x", DefaultMaxHeaderBytes), Limits{}, ErrHeaderTooLarge)
}

// TestParseTolerates covers inputs that are odd but still mail.
func TestParseTolerates(t *testing.T) {
	f := func(in, wantText string) {
		t.Helper()
		m, err := Parse([]byte(in), Limits{})
		if err != nil {
			t.Fatalf("Parse(%q): %v", in, err)
		}
		checkInvariants(t, m, Limits{}.withDefaults())
		eq(t, "Text", m.Text, wantText)
	}
	f("Subject: headers only", "")
	f("Subject : obsolete blank before colon\n\nbody\n", "body\n")
	f("X-Bin: \xff\xfe\r\n\r\n\xff body\r\n", "ÿ body\n")
	f("Content-Type: multipart/mixed\r\n\r\nno boundary parameter\r\n", "no boundary parameter\n")
	f("Content-Type: text/plain; charset=x-unknown-charset\r\n\r\ncaf\xe9\r\n", "café\n")
	f("Content-Type: text/plain; charset=utf-8\r\n\r\nbad \xff utf-8\r\n", "bad \uFFFD utf-8\n")
	f("Content-Type: text/plain\r\nContent-Transfer-Encoding: x-unknown\r\n\r\nraw\r\n", "raw\n")
	f("Content-Transfer-Encoding: base64\r\n\r\nSGVsbG8gd29ybGQhX\r\n", "Hello world!") // corrupt: partial content kept
	f("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n\r\nno headers\r\n--b--\r\n", "no headers")
	f("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\n--b\r\nContent-Type: text/plain\r\n\r\nafter empty part\r\n--b--\r\n", "after empty part")
	f("Content-Type: multipart/mixed; boundary=b\r\n\r\n--b--\r\n", "")
	f("Content-Type: application/pdf; boundary=x\r\n\r\n--x\r\n", "")
	f("Content-Type: text/plain; boundary=x\r\n\r\n--x\r\nnot a part\r\n", "--x\nnot a part\n")
	// Boundaries that are prefixes of each other, and transport padding after a delimiter.
	f("Content-Type: multipart/mixed; boundary=a\r\n\r\n--a \t\r\nContent-Type: multipart/mixed; boundary=ab\r\n\r\n"+
		"--ab\r\n\r\ninner\r\n--ab--\r\n--a\r\n\r\nouter\r\n--a--\r\n", "inner\nouter")
}

func TestParseMessageNotRetained(t *testing.T) {
	raw, _ := os.ReadFile("testdata/mixed_attachments.eml")
	m, err := Parse(raw, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := toGolden(m)
	for i := range raw {
		raw[i] = 'X'
	}
	if got := toGolden(m); !equalJSON(got, want) {
		t.Errorf("Message changed when the input was overwritten")
	}
}

func TestParseLimits(t *testing.T) {
	t.Run("parts", func(t *testing.T) {
		var b strings.Builder
		b.WriteString("Subject: many parts\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n")
		for i := range 10 {
			b.WriteString("--b\r\nContent-Type: text/plain\r\n\r\npart " + string(rune('0'+i)) + "\r\n")
		}
		b.WriteString("--b--\r\n")
		lim := Limits{MaxParts: 4}
		m, err := Parse([]byte(b.String()), lim)
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, m, lim.withDefaults())
		eq(t, "Text", m.Text, "part 0\npart 1\npart 2\npart 3")
		hasWarning(t, m, "more than 4 MIME parts")
		if !m.PartsTruncated {
			t.Error("PartsTruncated not set")
		}

		// Exactly MaxParts parts: nothing left out.
		m, err = Parse([]byte(b.String()), Limits{MaxParts: 10})
		if err != nil {
			t.Fatal(err)
		}
		if m.PartsTruncated || len(m.Warnings) > 0 {
			t.Errorf("10 parts at MaxParts 10: PartsTruncated %v, warnings %q", m.PartsTruncated, m.Warnings)
		}
	})
	t.Run("300 attachments", func(t *testing.T) {
		m, err := Parse(mimeWithAttachments(300, 100), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Attachments) != 300 || m.PartsTruncated {
			t.Errorf("%d attachments, PartsTruncated %v; want all 300", len(m.Attachments), m.PartsTruncated)
		}
		for i, a := range m.Attachments {
			if want := payload(100, byte(i)); a.Filename != "f"+strconv.Itoa(i)+".pdf" || !bytes.Equal(a.Data, want) {
				t.Fatalf("attachment %d: %q, %d bytes", i, a.Filename, len(a.Data))
			}
		}
		noWarnings(t, m)
		eq(t, "Text", m.Text, "See the attached files.")
	})
	t.Run("more than MaxParts attachments", func(t *testing.T) {
		// The text body is a part too: DefaultMaxParts-1 attachments fit.
		m, err := Parse(mimeWithAttachments(DefaultMaxParts+100, 10), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		checkInvariants(t, m, Limits{}.withDefaults())
		if len(m.Attachments) != DefaultMaxParts-1 || !m.PartsTruncated {
			t.Errorf("%d attachments, PartsTruncated %v; want %d and true", len(m.Attachments), m.PartsTruncated, DefaultMaxParts-1)
		}
		if last := m.Attachments[len(m.Attachments)-1]; last.Filename != "f"+strconv.Itoa(DefaultMaxParts-2)+".pdf" {
			t.Errorf("last attachment %q", last.Filename)
		}
		hasWarning(t, m, "more than "+strconv.Itoa(DefaultMaxParts)+" MIME parts")

		m, err = Parse(mimeWithAttachments(60, 10), Limits{MaxParts: 50})
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Attachments) != 49 || !m.PartsTruncated {
			t.Errorf("MaxParts 50: %d attachments, PartsTruncated %v", len(m.Attachments), m.PartsTruncated)
		}
	})
	t.Run("truncation reported past the warning cap", func(t *testing.T) {
		// maxWarnings problems before the limit is hit: its Warning is left out, the flag is not.
		var b strings.Builder
		b.WriteString("Content-Type: multipart/mixed; boundary=b\r\n\r\n")
		for range maxWarnings + 5 {
			b.WriteString("--b\r\nContent-Type: multipart/mixed; boundary=c\r\n\r\nno delimiter\r\n")
		}
		b.WriteString("--b--\r\n")
		m, err := Parse([]byte(b.String()), Limits{MaxParts: maxWarnings + 2})
		if err != nil {
			t.Fatal(err)
		}
		if !m.PartsTruncated {
			t.Error("PartsTruncated not set")
		}
		for _, w := range m.Warnings {
			if strings.Contains(w, "MIME parts") {
				t.Errorf("the limit's warning fit (%q): the test needs more problems first", w)
			}
		}
	})
	t.Run("depth", func(t *testing.T) {
		m, err := Parse([]byte(nested(5, "deep text")), Limits{MaxDepth: 3})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "Text", m.Text, "level 1\nlevel 2\nlevel 3")
		hasWarning(t, m, "nested deeper than 3 levels")
		if !m.PartsTruncated {
			t.Error("PartsTruncated not set")
		}

		m, err = Parse([]byte(nested(5, "deep text")), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "Text", m.Text, "level 1\nlevel 2\nlevel 3\nlevel 4\nlevel 5\ndeep text")
		noWarnings(t, m)
		if m.PartsTruncated {
			t.Error("PartsTruncated set")
		}
	})
	t.Run("part header", func(t *testing.T) {
		in := "Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nX-Long: " + strings.Repeat("y", 200) +
			"\r\n\r\nbody\r\n--b--\r\n"
		m, err := Parse([]byte(in), Limits{MaxHeaderBytes: 100})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(m.Text, "X-Long: yyy") {
			t.Errorf("Text = %q, want the part kept as text", m.Text)
		}
		hasWarning(t, m, "header block of")
	})
}

// nested returns a message of levels nested multipart/mixed, each with a text part, and text in
// the innermost one.
func nested(levels int, text string) string {
	var b strings.Builder
	b.WriteString("Subject: nested\r\n")
	for i := 1; i <= levels; i++ {
		bd := "b" + strings.Repeat("x", i)
		b.WriteString("Content-Type: multipart/mixed; boundary=" + bd + "\r\n\r\n--" + bd +
			"\r\nContent-Type: text/plain\r\n\r\nlevel " + string(rune('0'+i)) + "\r\n--" + bd + "\r\n")
	}
	b.WriteString("Content-Type: text/plain\r\n\r\n" + text)
	for i := levels; i >= 1; i-- {
		b.WriteString("\r\n--b" + strings.Repeat("x", i) + "--")
	}
	b.WriteString("\r\n")
	return b.String()
}

func TestParseIDs(t *testing.T) {
	f := func(in string, anyWord bool, want ...string) {
		t.Helper()
		if want == nil {
			want = []string{}
		}
		if got := parseIDs(in, anyWord); !slices.Equal(got, want) {
			t.Errorf("parseIDs(%q) = %q, want %q", in, got, want)
		}
	}
	f("", false)
	f("<a@b>", false, "<a@b>")
	f("  <a@b>  <c@d>,<e@f>", false, "<a@b>", "<c@d>", "<e@f>")
	f("<a@b> (comment with <x@y> inside (nested)) <c@d>", false, "<a@b>", "<c@d>")
	f("a@b c@d", false, "<a@b>", "<c@d>")
	f("<a@b> c@d", false, "<a@b>", "<c@d>")
	f(`"Your message of Tue, 24 Feb <x@y>" <a@b>`, false, "<a@b>")
	f("Your message of Tue, 24 Feb 2026 <a@b>", false, "<a@b>")
	f("<a@\r\n b>", false, "<a@b>")
	f("<>  <<x@y>", false, "<x@y>")
	f("<unterminated@x", false, "<unterminated@x>")
	f("(unterminated <a@b>", false)
	f("abc", false)
	f("abc", true, "<abc>")
	f("a@b>", false, "<a@b>")
	f("<a\xffb@c>", false, "<a\uFFFDb@c>")
}

func TestDisplayAddress(t *testing.T) {
	f := func(header, want string) {
		t.Helper()
		p := &parser{}
		got := p.addresses(map[string][]string{"To": {header}}, "To")
		if len(got) != 1 || got[0] != want {
			t.Errorf("addresses(%q) = %q, want %q", header, got, want)
		}
	}
	f("a@example.com", "a@example.com")
	f("<a@example.com>", "a@example.com")
	f("Ann <a@example.com>", "Ann <a@example.com>")
	f(`"Ann" <a@example.com>`, "Ann <a@example.com>")
	f(`"Doe, Ann" <a@example.com>`, `"Doe, Ann" <a@example.com>`)
	f(`"Ann \"the\" Doe" <a@example.com>`, `"Ann \"the\" Doe" <a@example.com>`)
	f("a@example.com (Ann)", "Ann <a@example.com>")
	f("=?utf-8?q?Z=C3=BCrich?= <z@example.ch>", "Zürich <z@example.ch>")
	f(`"a@example.com" <a@example.com>`, "a@example.com")
	// Unparseable: kept as text, with a Warning.
	p := &parser{}
	if got := p.addresses(map[string][]string{"To": {"broken <<, ok@example.com"}}, "To"); !slices.Equal(got, []string{"broken <<", "ok@example.com"}) {
		t.Errorf("lenient fallback = %q", got)
	}
	if len(p.warnings) != 1 {
		t.Errorf("warnings = %q", p.warnings)
	}
}

func TestDecodeHeader(t *testing.T) {
	f := func(in, want string) {
		t.Helper()
		if got := decodeHeader(in); got != want {
			t.Errorf("decodeHeader(%q) = %q, want %q", in, got, want)
		}
	}
	f("plain", "plain")
	f("=?utf-8?q?caf=C3=A9?=", "café")
	f("=?ISO-8859-1?Q?caf=E9?= =?ISO-8859-1?Q?_cr=E8me?=", "café crème")
	f("=?windows-1252?q?=80?=", "€")
	f("=?Shift_JIS?B?k/qWe4zq?=", "日本語")
	f("=?ISO-2022-JP?B?GyRCRnxLXDhsGyhC?=", "日本語")
	f("=?EUC-KR?B?x9Gxubi7?=", "한국말")
	f("=?GB2312?B?1tDOxA==?=", "中文")
	f("=?x-unknown?q?abc?= =?utf-8?q?d?=", "abcd")
	f("=?utf-8?q?bad=FF?=", "bad\uFFFD")
	f("raw \xe9 byte", "raw \uFFFD byte")
	f("=?utf-8?q?unterminated", "=?utf-8?q?unterminated")
}

func TestSanitizeFilename(t *testing.T) {
	f := func(in, ctype, want string) {
		t.Helper()
		if got := sanitizeFilename(in, ctype); got != want {
			t.Errorf("sanitizeFilename(%q) = %q, want %q", in, got, want)
		}
	}
	f("invoice.pdf", "application/pdf", "invoice.pdf")
	f("", "application/pdf", "attachment.pdf")
	f("", "image/jpeg", "attachment.jpg")
	f("", "application/x-unknown", "attachment")
	f("../../etc/passwd", "", "passwd")
	f(`C:\Users\me\evil.exe`, "", "evil.exe")
	f("dir/", "text/plain", "attachment.txt")
	f("...hidden", "", "hidden")
	f(". . .x", "", "x")
	f("  spaced name.txt  ", "", "spaced name.txt")
	f("a\x00b\x1fc\x7fd\u0085e.txt", "", "abcde.txt")
	f("in\u202Efdp.exe", "", "infdp.exe")
	f("zero\u200Bwidth.txt", "", "zerowidth.txt")
	f("bad\xffutf8.txt", "", "badutf8.txt")
	f(strings.Repeat("x", 300)+".pdf", "", strings.Repeat("x", 196)+".pdf")
	f(strings.Repeat("é", 150)+".pdf", "", strings.Repeat("é", 98)+".pdf")
	f(strings.Repeat("x", 300)+".verylongextensionname", "", strings.Repeat("x", 200))
	f(strings.Repeat("日", 100), "", strings.Repeat("日", 66))
}

func TestUniqueName(t *testing.T) {
	var names nameSet
	f := func(in, want string) {
		t.Helper()
		if got := names.unique(in); got != want {
			t.Errorf("unique(%q) = %q, want %q", in, got, want)
		}
	}
	f("a.pdf", "a.pdf")
	f("a.pdf", "a (2).pdf")
	f("a (2).pdf", "a (2) (2).pdf")
	f("a.pdf", "a (3).pdf")
	f("a (4).pdf", "a (4).pdf")
	f("a.pdf", "a (5).pdf")
	f("noext", "noext")
	f("noext", "noext (2)")
	long := strings.Repeat("x", 196) + ".pdf"
	f(long, long)
	f(long, strings.Repeat("x", 192)+" (2).pdf")
}

func TestSplitter(t *testing.T) {
	f := func(body, boundary string, closed bool, want ...string) {
		t.Helper()
		s := newMultipartSplitter([]byte(body), boundary)
		var got []string
		for {
			p, ok := s.next()
			if !ok {
				break
			}
			got = append(got, string(p))
		}
		if !slices.Equal(got, want) || s.closed != closed {
			t.Errorf("split(%q) = %q closed=%v, want %q closed=%v", body, got, s.closed, want, closed)
		}
	}
	f("", "b", false)
	f("no delimiter", "b", false)
	f("--b--\r\n", "b", true)
	f("--b\r\none\r\n--b\r\ntwo\r\n--b--\r\nepilogue", "b", true, "one", "two")
	f("preamble\n--b\none\n--b--", "b", true, "one")
	f("--b\none\n\n--b--", "b", true, "one\n")
	f("--b\r\nunclosed\r\n", "b", false, "unclosed\r\n")
	f("--b\r\nx--b\r\n --b\r\n--bc\r\n--b junk\r\n--b--", "b", true, "x--b\r\n --b\r\n--bc\r\n--b junk")
	f("--b  \t\r\nA\r\n--b\r\n--b--", "b", true, "A", "")
	f("--b\r\nA\r\n--b--trailing", "b", true, "A")
}

// checkInvariants asserts what holds for every Message Parse returns.
func checkInvariants(t testing.TB, m *Message, lim Limits) {
	t.Helper()
	strs := []string{m.From, m.Subject, m.Text, m.HTML, m.MessageID}
	for _, l := range [][]string{m.To, m.Cc, m.InReplyTo, m.References, m.Warnings} {
		if l == nil {
			t.Errorf("nil slice in %+v", m)
		}
		strs = append(strs, l...)
	}
	if m.Attachments == nil {
		t.Errorf("nil Attachments")
	}
	names := map[string]bool{}
	for _, a := range m.Attachments {
		strs = append(strs, a.Filename, a.ContentType)
		if names[a.Filename] {
			t.Errorf("duplicate attachment name %q", a.Filename)
		}
		names[a.Filename] = true
		if a.Filename == "" || len(a.Filename) > maxFilenameBytes || strings.ContainsAny(a.Filename, "/\\") ||
			strings.HasPrefix(a.Filename, ".") || strings.IndexFunc(a.Filename, func(r rune) bool { return r < ' ' || r == 0x7f }) >= 0 {
			t.Errorf("unsafe attachment name %q", a.Filename)
		}
		if a.ContentType == "" || strings.ContainsAny(a.ContentType, "; ") {
			t.Errorf("bad content type %q", a.ContentType)
		}
	}
	if len(m.Attachments) > lim.MaxParts+1 {
		t.Errorf("%d attachments, limit %d parts", len(m.Attachments), lim.MaxParts)
	}
	if len(m.Warnings) > maxWarnings+1 {
		t.Errorf("%d warnings", len(m.Warnings))
	}
	for _, s := range strs {
		if !utf8.ValidString(s) {
			t.Errorf("invalid UTF-8: %q", s)
		}
	}
	for _, id := range append(append([]string{m.MessageID}, m.InReplyTo...), m.References...) {
		if id != "" && (!strings.HasPrefix(id, "<") || !strings.HasSuffix(id, ">") || len(id) < 3) {
			t.Errorf("bad message id %q", id)
		}
	}
}

func eq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func eqs(t *testing.T, what string, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

// atts compares the attachments as "name type [inline]".
func atts(t *testing.T, m *Message, want ...string) {
	t.Helper()
	var got []string
	for _, a := range m.Attachments {
		s := a.Filename + " " + a.ContentType
		if a.Inline {
			s += " inline"
		}
		got = append(got, s)
	}
	if !slices.Equal(got, want) {
		t.Errorf("attachments = %q, want %q", got, want)
	}
}

func noWarnings(t *testing.T, m *Message) {
	t.Helper()
	if len(m.Warnings) > 0 {
		t.Errorf("unexpected warnings: %q", m.Warnings)
	}
}

func hasWarning(t *testing.T, m *Message, sub string) {
	t.Helper()
	for _, w := range m.Warnings {
		if strings.Contains(w, sub) {
			return
		}
	}
	t.Errorf("no warning containing %q in %q", sub, m.Warnings)
}

func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

func TestContainsFold(t *testing.T) {
	f := func(in, w string, want bool) {
		t.Helper()
		if got := containsFold([]byte(in), w); got != want {
			t.Errorf("containsFold(%q, %q) = %v", in, w, got)
		}
	}
	f("", "boundary", false)
	f("boundary", "boundary", true)
	f("BOUNDARY", "boundary", true)
	f("x; Boundary=1", "boundary", true)
	f("bboundar", "boundary", false)
	f("bbbbBBBboundarY", "boundary", true)
	f("boundar", "boundary", false)
	f("base6", "base64", false)
	f("Content-Transfer-Encoding: BASE64", "base64", true)
}
