package mailparse

import (
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestBuildMessageMatchesParse: the Message BuildMessage returns is the
// one Parse makes of the same bytes (the JSON inbound path relies on it).
func TestBuildMessageMatchesParse(t *testing.T) {
	f := func(c Compose) {
		t.Helper()
		raw, got, err := BuildMessage(c)
		if err != nil {
			t.Fatalf("BuildMessage: %v", err)
		}
		want, err := Parse(raw, Limits{})
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		if !got.Date.Equal(want.Date) {
			t.Errorf("Date %v, Parse gives %v", got.Date, want.Date)
		}
		got.Date, want.Date = time.Time{}, time.Time{} // same instant, zones differ
		if !reflect.DeepEqual(got, want) {
			t.Errorf("BuildMessage and Parse differ:\n got %+v\nwant %+v\n%s", got, want, raw)
		}
	}
	date := time.Date(2026, 2, 24, 10, 5, 0, 123456789, time.UTC)
	pdf := []byte("%PDF-1.4\nbinary \x00\x01\x02\xff\n%%EOF\n")
	f(Compose{From: "Customer <customer@example.com>", To: "agent@mail.example.com", Subject: "Re: Your order", Text: "Thanks...\n", Date: date})
	f(Compose{From: "a@example.com", To: "b@example.com", Date: date})
	f(Compose{From: "a@example.com", Subject: "HTML", HTML: "<p>Hello <b>world</b></p>\n", Date: date})
	f(Compose{From: "Ann <a@example.com>", To: "b@example.com", Text: "Plain\r\nline\rcr\n", HTML: "<p>Rich</p>", Date: date})
	f(Compose{From: "Jörg Müller <joerg@example.de>", To: "张三 <zhang@example.cn>",
		Cc:      []string{`"Doe, Ann" <ann@example.com>`, "Ana María <ana@example.es>, plain@example.com"},
		Subject: "Grüße — お問い合わせの件 " + strings.Repeat("長い件名 ", 20), Text: "Café crème.\nこんにちは世界\n", Date: date})
	f(Compose{From: "a@example.com", To: "b@example.com", Subject: "Re: x", MessageID: "reply-1@example.com", InReplyTo: "original@message.id", Text: "ok\n", Date: date})
	f(Compose{From: "a@example.com", To: "b@example.com", Subject: "Files", Text: "See attached.\n", Date: date,
		Attachments: []Attachment{
			{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf},
			{Filename: "../etc/passwd", ContentType: "text/plain", Data: []byte("x\n")},
			{Filename: "invoice.pdf", ContentType: "application/pdf", Data: pdf[:3]},
			{Filename: "", Data: nil},
		}})
}
