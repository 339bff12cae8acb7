package mailparse

import (
	"bytes"
	"os"
	"strings"
	"testing"
)

// Run: go test -run '^$' -bench . -benchmem ./mailparse/
// The ingest path needs ~20k small messages/s on 2 cores: see the Parallel variants.

func benchSmall(b *testing.B) []byte {
	raw, err := os.ReadFile("testdata/plain.eml")
	if err != nil {
		b.Fatal(err)
	}
	return raw
}

// bench50K is a 50 KiB multipart/mixed: alternative text and HTML, and a 40 KiB PDF-ish
// attachment in base64.
func bench50K(b *testing.B) []byte {
	data := bytes.Repeat([]byte("%PDF-1.4 binary \x00\x01\x02\xff stream "), 1200)[:30<<10]
	raw, err := Build(Compose{
		From: "Erin <erin@example.com>", To: "agent@mail.example.com", Subject: "Invoice",
		Text:        strings.Repeat("Please find the invoice attached. ", 100),
		HTML:        "<p>" + strings.Repeat("Please find the <b>invoice</b> attached. ", 100) + "</p>",
		Attachments: []Attachment{{Filename: "invoice.pdf", ContentType: "application/pdf", Data: data}},
	})
	if err != nil {
		b.Fatal(err)
	}
	if len(raw) < 48<<10 || len(raw) > 52<<10 {
		b.Fatalf("bench message is %d bytes", len(raw))
	}
	return raw
}

func benchParse(b *testing.B, raw []byte) {
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(raw, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

func benchParseParallel(b *testing.B, raw []byte) {
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Parse(raw, Limits{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkParseSmall(b *testing.B)         { benchParse(b, benchSmall(b)) }
func BenchmarkParseSmallParallel(b *testing.B) { benchParseParallel(b, benchSmall(b)) }
func BenchmarkParse50KMultipart(b *testing.B)  { benchParse(b, bench50K(b)) }
func BenchmarkParse50KParallel(b *testing.B)   { benchParseParallel(b, bench50K(b)) }

var smallCompose = Compose{
	From: "Customer <customer@example.com>", To: "agent@mail.example.com",
	Subject: "Re: Your order", Text: "Thanks for following up, the parcel arrived today.\n",
	MessageID: "<reply-1@example.com>", InReplyTo: "<original@message.id>",
}

func BenchmarkBuildSmall(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Build(smallCompose); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBuildSmallParallel(b *testing.B) {
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := Build(smallCompose); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
