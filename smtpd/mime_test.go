package smtpd

import (
	"bytes"
	"net/smtp"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/store"
)

// sendFixture sends a testdata message to agent@localhost with net/smtp
// and returns the message stored for it.
func sendFixture(t *testing.T, e *env, name string) (store.Message, []byte) {
	t.Helper()
	raw := readFixture(t, name)
	before := len(e.messages("agent"))
	if err := smtp.SendMail(e.srv.Addr(), nil, "sender@example.com", []string{"agent@localhost"}, raw); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	msgs := e.messages("agent")
	if len(msgs) != before+1 {
		t.Fatalf("%s: %d messages, want %d", name, len(msgs), before+1)
	}
	return msgs[0], raw
}

// MIME end to end: what a real client sends over SMTP is stored parsed
// (decoded headers and bodies in UTF-8, attachments with their bytes) next
// to the exact raw bytes, with one event per message.
func TestMIMEThroughSMTP(t *testing.T) {
	e := newEnv(t, envOptions{})
	for _, tc := range []struct {
		file  string
		check func(t *testing.T, m store.Message)
	}{
		{"plain.eml", func(t *testing.T, m store.Message) {
			eq(t, "subject", m.Subject, "Plain hello")
			eq(t, "html", m.BodyHTML, "")
			if len(m.Attachments) != 0 {
				t.Errorf("attachments %+v", m.Attachments)
			}
		}},
		{"html_only.eml", func(t *testing.T, m store.Message) {
			eq(t, "from", m.From, "Newsletter <news@example.org>")
			contains(t, "html", m.BodyHTML, "<h1>Weekly news</h1>")
			// The text is derived from the HTML.
			contains(t, "text", m.BodyText, "Weekly news")
			contains(t, "text", m.BodyText, "story online")
			if strings.Contains(m.BodyText, "<p>") {
				t.Errorf("text keeps tags: %q", m.BodyText)
			}
		}},
		{"alternative_attachment.eml", func(t *testing.T, m store.Message) {
			eq(t, "subject", m.Subject, "Quarterly report")
			eq(t, "text", strings.TrimSpace(m.BodyText), "The report is attached.")
			contains(t, "html", m.BodyHTML, "<i>attached</i>")
			if len(m.Cc) != 1 || m.Cc[0] != "Carol <carol@example.net>" {
				t.Errorf("cc %q", m.Cc)
			}
			pdf := readFixture(t, "report.pdf.bin")
			if len(m.Attachments) != 1 || m.Attachments[0] != (store.AttachmentMeta{Filename: "report.pdf", ContentType: "application/pdf", SizeBytes: len(pdf)}) {
				t.Fatalf("attachments %+v", m.Attachments)
			}
			_, data, err := e.db.GetAttachment(e.account.ID, m.ID, "report.pdf")
			if err != nil || !bytes.Equal(data, pdf) {
				t.Errorf("attachment bytes differ (%v)", err)
			}
		}},
		{"iso8859_1.eml", func(t *testing.T, m store.Message) {
			eq(t, "subject", m.Subject, "Café crème à la carte")
			eq(t, "from", m.From, "Zoë Lefèvre <zoe@example.fr>")
			eq(t, "text", m.BodyText, "Déjà vu: un café crème, s'il vous plaît.\nÀ bientôt, Zoë\n")
		}},
		{"shift_jis.eml", func(t *testing.T, m store.Message) {
			eq(t, "subject", m.Subject, "請求書のご案内")
			eq(t, "from", m.From, "山田花子 <hanako@example.jp>")
			eq(t, "text", m.BodyText, "山田様\n\n今月の請求書をお送りします。\nご確認ください。\n")
		}},
		{"malformed.eml", func(t *testing.T, m store.Message) {
			// Unclosed multipart, a multipart without a boundary, broken
			// base64: stored anyway, with what could be read.
			eq(t, "subject", m.Subject, "Malformed MIME tree")
			contains(t, "text", m.BodyText, "Readable part before the damage.")
		}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			m, raw := sendFixture(t, e, tc.file)
			stored, err := e.db.GetRaw(e.account.ID, m.ID)
			if err != nil || !bytes.Equal(stored, raw) {
				t.Fatalf("raw differs from what was sent (%v)", err)
			}
			if m.RawSize != len(raw) || m.To != "agent@localhost" {
				t.Errorf("size %d to %q", m.RawSize, m.To)
			}
			tc.check(t, m)
		})
	}
	if got, want := len(e.events("agent")), len(e.messages("agent")); got != want {
		t.Errorf("%d events for %d messages", got, want)
	}
}

// A reply (In-Reply-To the first message's Message-ID) joins the first
// message's thread; an unrelated message starts its own.
func TestThreadingThroughSMTP(t *testing.T) {
	e := newEnv(t, envOptions{})
	first, _ := sendFixture(t, e, "thread_first.eml")
	other, _ := sendFixture(t, e, "plain.eml")
	reply, _ := sendFixture(t, e, "thread_reply.eml")
	if first.ThreadID == "" || reply.ThreadID != first.ThreadID {
		t.Errorf("reply thread %q, first %q: want the same", reply.ThreadID, first.ThreadID)
	}
	if other.ThreadID == first.ThreadID {
		t.Errorf("unrelated message joined thread %q", first.ThreadID)
	}
	eq(t, "reply id", reply.RFCMessageID, "<thread-2@test.example>")
}

func eq(t *testing.T, what, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s = %q, want %q", what, got, want)
	}
}

func contains(t *testing.T, what, got, sub string) {
	t.Helper()
	if !strings.Contains(got, sub) {
		t.Errorf("%s = %q, want it to contain %q", what, got, sub)
	}
}
