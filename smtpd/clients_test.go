package smtpd

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The commands docs/SMTP.md shows, run against a test server (skipped
// where the tool is not installed).

func TestCurlCommandsFromDocs(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed")
	}
	e := newEnv(t, envOptions{})
	dir := t.TempDir()
	// A file with CRLF line ends is sent as is.
	crlf := filepath.Join(dir, "mail.eml")
	if err := os.WriteFile(crlf, []byte("From: You <you@example.com>\r\nTo: agent@localhost\r\nSubject: Hello from curl\r\n\r\nIt works.\r\n.dot line\r\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "", "curl", "-sS", "smtp://"+e.srv.Addr(), "--mail-from", "you@example.com", "--mail-rcpt", "agent@localhost", "--upload-file", crlf)
	m := e.only("agent")
	eq(t, "subject", m.Subject, "Hello from curl")
	eq(t, "text", m.BodyText, "It works.\n.dot line\n")
	raw, err := e.db.GetRaw(e.account.ID, m.ID)
	if want, _ := os.ReadFile(crlf); err != nil || string(raw) != string(want) {
		t.Errorf("raw %q, want the file", raw)
	}

	// A file with LF line ends (as an editor writes it) needs --crlf, or
	// it is stored with bare LFs and an extra CRLF at the end.
	lf := filepath.Join(dir, "mail-lf.eml")
	if err := os.WriteFile(lf, []byte("From: You <you@example.com>\nTo: agent@localhost\nSubject: Hello from curl, LF\n\nIt works.\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "", "curl", "-sS", "--crlf", "smtp://"+e.srv.Addr(), "--mail-from", "you@example.com", "--mail-rcpt", "agent@localhost", "--upload-file", lf)
	m = e.messages("agent")[0]
	eq(t, "subject", m.Subject, "Hello from curl, LF")
	raw, _ = e.db.GetRaw(e.account.ID, m.ID)
	eq(t, "raw", string(raw), "From: You <you@example.com>\r\nTo: agent@localhost\r\nSubject: Hello from curl, LF\r\n\r\nIt works.\r\n")

	// The dev banner's one-liner: bash's <<< $'...' sends this, newline added.
	run(t, "Subject: Hello\r\n\r\nIt works.\n", "curl", "-s", "smtp://"+e.srv.Addr(), "--mail-from", "you@example.com", "--mail-rcpt", "agent@localhost", "-T", "-")
	if n := len(e.messages("agent")); n != 3 {
		t.Fatalf("%d messages, want 3", n)
	}
	eq(t, "subject", e.messages("agent")[0].Subject, "Hello")

	// An unknown recipient makes curl fail (exit 55: failed sending).
	out, err := exec.CommandContext(t.Context(), "curl", "-sS", "smtp://"+e.srv.Addr(), "--mail-from", "you@example.com", "--mail-rcpt", "nobody@localhost", "--upload-file", crlf).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "550") {
		t.Errorf("curl to an unknown recipient: %v, %s", err, out)
	}
}

func TestSwaksCommandFromDocs(t *testing.T) {
	if _, err := exec.LookPath("swaks"); err != nil {
		t.Skip("swaks not installed")
	}
	e := newEnv(t, envOptions{})
	out := run(t, "", "swaks", "--server", e.srv.Addr(), "--to", "agent@localhost", "--from", "you@example.com",
		"--header", "Subject: Hello from swaks", "--body", "It works.")
	t.Logf("swaks transcript:\n%s", out)
	if !strings.Contains(out, "<-  250 2.0.0 OK: stored as msg_") {
		t.Errorf("swaks transcript lacks the 250:\n%s", out)
	}
	m := e.only("agent")
	eq(t, "subject", m.Subject, "Hello from swaks")
	contains(t, "text", m.BodyText, "It works.")
}

func run(t *testing.T, stdin string, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// STARTTLS as docs/SMTP.md shows it: swaks --tls, curl --ssl-reqd.
func TestTLSCommandsFromDocs(t *testing.T) {
	certFile, keyFile, _ := selfSigned(t, t.TempDir())
	e := newEnv(t, envOptions{cfg: func(c *Config) { c.TLSCertFile, c.TLSKeyFile = certFile, keyFile }})
	var want []string
	if _, err := exec.LookPath("swaks"); err == nil {
		out := run(t, "", "swaks", "--server", e.srv.Addr(), "--to", "agent@localhost", "--from", "you@example.com", "--tls",
			"--header", "Subject: swaks over TLS")
		if !strings.Contains(out, "=== TLS started") || !strings.Contains(out, "<~  250 2.0.0 OK: stored as msg_") {
			t.Errorf("swaks --tls transcript:\n%s", out)
		}
		want = append(want, "swaks over TLS")
	}
	if _, err := exec.LookPath("curl"); err == nil {
		run(t, "Subject: curl over TLS\r\n\r\nIt works.\r\n", "curl", "-sS", "--ssl-reqd", "--cacert", certFile,
			"smtp://localhost:"+portOf(e.srv.Addr()), "--mail-from", "you@example.com", "--mail-rcpt", "agent@localhost", "-T", "-")
		want = append(want, "curl over TLS")
	}
	if want == nil {
		t.Skip("neither swaks nor curl installed")
	}
	var got []string
	for _, m := range e.messages("agent") {
		got = append([]string{m.Subject}, got...) // oldest first
	}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("stored %q, want %q", got, want)
	}
}

func portOf(addr string) string { return addr[strings.LastIndexByte(addr, ':')+1:] }
