package mailparse

import (
	"bytes"
	"errors"
	"net/mail"
	"regexp"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

var testDate = time.Date(2026, 2, 24, 10, 5, 0, 0, time.UTC)

func TestBuildRoundTrip(t *testing.T) {
	pdf := []byte("%PDF-1.4\n%\xe2\xe3\xcf\xd3\nbinary \x00\x01\x02\xff\n%%EOF\n")
	cases := []struct {
		name string
		c    Compose
	}{
		{"text only", Compose{From: "Customer <customer@example.com>", To: "agent@mail.example.com",
			Subject: "Re: Your order", Text: "Thanks for following up...\n"}},
		{"empty body", Compose{From: "a@example.com", To: "b@example.com"}},
		{"text without final newline", Compose{From: "a@example.com", To: "b@example.com", Subject: "x", Text: "no newline"}},
		{"html only", Compose{From: "a@example.com", To: "b@example.com", Subject: "HTML", HTML: "<p>Hello <b>world</b></p>\n"}},
		{"text and html", Compose{From: "Ann <a@example.com>", To: "b@example.com", Subject: "Both",
			Text: "Plain\n", HTML: "<p>Rich</p>"}},
		{"non-ASCII everywhere", Compose{
			From:    "Jörg Müller <joerg@example.de>",
			To:      "张三 <zhang@example.cn>",
			Cc:      []string{`"Doe, Ann" <ann@example.com>`, "Ana María <ana@example.es>, plain@example.com"},
			Subject: "Grüße — お問い合わせの件 " + strings.Repeat("長い件名 ", 20),
			Text:    "Café crème.\nこんにちは世界\n" + strings.Repeat("long line ", 30) + "\n",
			HTML:    "<p>日本語のテスト</p>\n",
		}},
		{"mostly non-ASCII text is base64", Compose{From: "a@example.com", To: "b@example.com",
			Subject: "日本語", Text: strings.Repeat("日本語のテストです。", 40)}},
		{"line breaks of every kind", Compose{From: "a@example.com", To: "b@example.com",
			Text: "lf\ncrlf\r\ncr\rend\n", HTML: "<p>\r\n</p>"}},
		{"awkward subjects", Compose{From: "a@example.com", To: "b@example.com",
			Subject: "  =?utf-8?q?not_an_encoded_word?= and \"quotes\"\t(tab) " + strings.Repeat("w", 1000)}},
		{"long ASCII subject is folded", Compose{From: "a@example.com", To: "b@example.com",
			Subject: strings.Repeat("word ", 40) + "end"}},
		{"reply with ids without brackets", Compose{From: "a@example.com", To: "b@example.com", Subject: "Re: x",
			MessageID: "reply-1@example.com", InReplyTo: "original@message.id", Text: "ok\n"}},
		{"attachments", Compose{From: "a@example.com", To: "b@example.com", Subject: "Files",
			Text: "See attached.\n", HTML: "<p>See attached.</p>",
			MessageID: "<att@example.com>",
			Attachments: []Attachment{
				{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf},
				{Filename: "請求書 2026年2月.pdf", ContentType: "application/pdf", Data: pdf[:10]},
				{Filename: "photo.png", ContentType: "image/png", Data: []byte("\x89PNG\r\n\x1a\n"), Inline: true},
				{Filename: "notes.txt", ContentType: "text/plain", Data: []byte("plain attachment\n")},
				{Filename: "empty.bin", Data: nil},
			}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.c.Date = testDate
			raw, err := Build(tc.c)
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			checkWireFormat(t, raw)
			m, err := Parse(raw, Limits{})
			if err != nil {
				t.Fatalf("Parse(Build): %v\n%s", err, raw)
			}
			checkInvariants(t, m, Limits{}.withDefaults())
			noWarnings(t, m)

			eq(t, "From", m.From, display(t, tc.c.From)[0])
			eqs(t, "To", m.To, display(t, tc.c.To)...)
			var cc []string
			for _, s := range tc.c.Cc {
				cc = append(cc, display(t, s)...)
			}
			eqs(t, "Cc", m.Cc, cc...)
			eq(t, "Subject", m.Subject, tc.c.Subject)
			eq(t, "HTML", m.HTML, lf(tc.c.HTML))
			if tc.c.Text != "" || tc.c.HTML == "" {
				eq(t, "Text", m.Text, lf(tc.c.Text))
			}
			if tc.c.MessageID != "" {
				eq(t, "MessageID", m.MessageID, "<"+strings.Trim(tc.c.MessageID, "<>")+">")
			} else if !regexp.MustCompile(`^<[a-z2-7]{26}@[a-z.]+>$`).MatchString(m.MessageID) {
				t.Errorf("generated MessageID = %q", m.MessageID)
			}
			if tc.c.InReplyTo != "" {
				id := "<" + strings.Trim(tc.c.InReplyTo, "<>") + ">"
				eqs(t, "InReplyTo", m.InReplyTo, id)
				eqs(t, "References", m.References, id)
			} else {
				eqs(t, "InReplyTo", m.InReplyTo)
			}
			if !m.Date.Equal(testDate) {
				t.Errorf("Date = %v", m.Date)
			}
			if len(m.Attachments) != len(tc.c.Attachments) {
				t.Fatalf("%d attachments, want %d", len(m.Attachments), len(tc.c.Attachments))
			}
			for i, a := range m.Attachments {
				w := tc.c.Attachments[i]
				wantType := w.ContentType
				if wantType == "" {
					wantType = "application/octet-stream"
				}
				if a.Filename != w.Filename || a.ContentType != wantType || !bytes.Equal(a.Data, w.Data) || a.Inline != w.Inline {
					t.Errorf("attachment %d = %q %q %q inline=%v, want %q %q %q inline=%v", i,
						a.Filename, a.ContentType, a.Data, a.Inline, w.Filename, wantType, w.Data, w.Inline)
				}
			}
		})
	}
}

func TestBuildStructure(t *testing.T) {
	f := func(c Compose, want ...string) {
		t.Helper()
		c.Date = testDate
		raw, err := Build(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, w := range want {
			if !bytes.Contains(raw, []byte(w)) {
				t.Errorf("message lacks %q:\n%s", w, raw)
			}
		}
	}
	base := Compose{From: "Ann <a@example.com>", To: "b@example.com", MessageID: "id@example.com"}
	c := base
	c.Subject, c.Text = "Hello", "Hi\n"
	f(c, "Date: Tue, 24 Feb 2026 10:05:00 +0000\r\n", "From: \"Ann\" <a@example.com>\r\n", "To: <b@example.com>\r\n",
		"Subject: Hello\r\n", "Message-ID: <id@example.com>\r\n", "MIME-Version: 1.0\r\n",
		"Content-Type: text/plain; charset=utf-8\r\n", "Content-Transfer-Encoding: 7bit\r\n\r\nHi\r\n")
	c = base
	c.Subject, c.Text = "Café au lait", "Café au lait with crème\n"
	f(c, "Subject: =?utf-8?q?Caf=C3=A9_au_lait?=\r\n", "Content-Transfer-Encoding: quoted-printable\r\n\r\nCaf=C3=A9 au lait with cr=C3=A8me\r\n")
	c.Subject = "Café"
	f(c, "Subject: =?utf-8?b?Q2Fmw6k=?=\r\n") // mostly non-ASCII bytes: B is shorter
	c = base
	c.Text = strings.Repeat("日本語", 10)
	f(c, "Content-Transfer-Encoding: base64\r\n")
	c = base
	c.Text, c.HTML = "t", "<p>h</p>"
	f(c, "Subject:\r\n", "Content-Type: multipart/alternative;\r\n boundary=")
	c.Attachments = []Attachment{{Filename: "a.pdf", ContentType: "application/pdf", Data: []byte("x")}}
	f(c, "Content-Type: multipart/mixed;\r\n boundary=", "Content-Type: multipart/alternative; boundary=",
		"Content-Disposition: attachment; filename=a.pdf\r\n", "Content-Type: application/pdf; name=a.pdf\r\n",
		"Content-Transfer-Encoding: base64\r\n")
	c.Attachments = []Attachment{{Filename: "日本.pdf", ContentType: "application/pdf", Data: []byte("x")}}
	f(c, "filename*=utf-8''%E6%97%A5%E6%9C%AC.pdf")
	c = base
	c.InReplyTo = "<parent@example.com>"
	f(c, "In-Reply-To: <parent@example.com>\r\n", "References: <parent@example.com>\r\n")
	c = base
	c.MessageID = ""
	f(c, "@example.com>\r\n")
}

func TestBuildErrors(t *testing.T) {
	f := func(c Compose) {
		t.Helper()
		if _, err := Build(c); !errors.Is(err, ErrInvalidCompose) {
			t.Errorf("Build(%+v) = %v, want ErrInvalidCompose", c, err)
		}
	}
	ok := Compose{From: "a@example.com", To: "b@example.com"}
	if _, err := Build(ok); err != nil {
		t.Fatal(err)
	}
	c := ok
	c.From = ""
	f(c)
	c.From = "not an address"
	f(c)
	c.From = "a@example.com\r\nBcc: victim@example.com"
	f(c)
	c = ok
	c.To = "broken <<"
	f(c)
	c = ok
	c.Cc = []string{"x@y", "<<"}
	f(c)
	c = ok
	c.MessageID = "has space@example.com"
	f(c)
	c = ok
	c.MessageID = "a@b\r\nBcc: x@y"
	f(c)
	c = ok
	c.InReplyTo = "<a<b@c>"
	f(c)
	c = ok
	c.Attachments = []Attachment{{Filename: "x", ContentType: "not a type"}}
	f(c)
	c.Attachments = []Attachment{{Filename: "x", ContentType: "multipart/mixed"}}
	f(c)
}

// TestBuildSanitizesAttachmentNames: Build names attachments as Parse would, so that the names
// survive the round trip.
func TestBuildSanitizesAttachmentNames(t *testing.T) {
	raw, err := Build(Compose{From: "a@example.com", To: "b@example.com", Attachments: []Attachment{
		{Filename: "../a.pdf", ContentType: "application/pdf"},
		{Filename: "a.pdf", ContentType: "application/pdf"},
		{Filename: "", ContentType: "image/png"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(raw, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	atts(t, m, "a.pdf application/pdf", "a (2).pdf application/pdf", "attachment.png image/png")
}

func TestNewMessageID(t *testing.T) {
	re := regexp.MustCompile(`^<[a-z2-7]{26}@([a-z0-9.-]+)>$`)
	f := func(domain, want string) {
		t.Helper()
		id := NewMessageID(domain)
		m := re.FindStringSubmatch(id)
		if m == nil || m[1] != want {
			t.Errorf("NewMessageID(%q) = %q, want domain %q", domain, id, want)
		}
	}
	f("mail.example.com", "mail.example.com")
	f(" Example.COM ", "example.com")
	f("", "mailwire.invalid")
	f("bad domain>", "mailwire.invalid")
	f("exämple.com", "mailwire.invalid")
	if NewMessageID("x") == NewMessageID("x") {
		t.Error("ids repeat")
	}
}

func TestWriteHeaderFolding(t *testing.T) {
	f := func(value string) {
		t.Helper()
		var b bytes.Buffer
		writeHeader(&b, "Subject", value)
		out := b.String()
		for i, line := range strings.Split(strings.TrimSuffix(out, "\r\n"), "\r\n") {
			start := 1 // a continuation line starts with the folding blank
			if i == 0 {
				start = len("Subject: ")
			}
			if len(line) > 78 && strings.Contains(line[start:], " ") {
				t.Errorf("line of %d bytes could have been folded: %q", len(line), line)
			}
		}
		m, err := Parse([]byte(out+"\r\n"), Limits{})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "unfolded", m.Subject, value)
	}
	f("short")
	f(strings.Repeat("abc ", 50) + "end")
	f("double  spaces  " + strings.Repeat("x ", 60) + "end")
	f(strings.Repeat("y", 200) + " tail " + strings.Repeat("z", 100))
}

// checkWireFormat asserts CRLF line endings only, no line over 998 bytes, and 7-bit headers.
func checkWireFormat(t *testing.T, raw []byte) {
	t.Helper()
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) ||
		bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\r")) {
		t.Errorf("bare CR or LF in:\n%q", raw)
	}
	for _, line := range bytes.Split(raw, []byte("\r\n")) {
		if len(line) > 998 {
			t.Errorf("line of %d bytes", len(line))
		}
	}
	hdr, _, _ := bytes.Cut(raw, []byte("\r\n\r\n"))
	for _, c := range hdr {
		if c >= 0x80 {
			t.Errorf("8-bit header:\n%s", hdr)
			break
		}
	}
	if !utf8.Valid(raw) {
		t.Errorf("not UTF-8") // everything is UTF-8 or ASCII-encoded
	}
}

// display is what Parse gives for an address list written by Build.
func display(t *testing.T, list string) []string {
	t.Helper()
	if strings.TrimSpace(list) == "" {
		return nil
	}
	as, err := mail.ParseAddressList(list)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range as {
		out = append(out, displayAddress(a))
	}
	return out
}

func lf(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "\r\n", "\n"), "\r", "\n")
}

func TestDisplayAddressReparses(t *testing.T) {
	for _, in := range []string{"Ann <a@x.com>", `"Doe, Ann" <a@x.com>`, `"A \"q\" B" <a@x.com>`,
		"J. R. Smith <j@x.com>", "Jörg Müller <j@x.com>", "a@x.com", "Ann (Work) <a@x.com>"} {
		as, err := mail.ParseAddressList(in)
		if err != nil {
			t.Fatalf("%q: %v", in, err)
		}
		d := displayAddress(as[0])
		back, err := mail.ParseAddress(d)
		if err != nil || back.Name != as[0].Name || back.Address != as[0].Address {
			t.Errorf("%q -> %q -> %+v, %v", in, d, back, err)
		}
	}
}
