package smtpd

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// writeCounter is a net.Conn that records its writes and reads from in.
type writeCounter struct {
	net.Conn // nil: only Read and Write are used
	in       *strings.Reader
	out      bytes.Buffer
	writes   int
}

func (w *writeCounter) Read(p []byte) (int, error) { return w.in.Read(p) }
func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.out.Write(p)
}

// Replies wait until go-smtp needs more input: a pipelined group of
// commands (RFC 2920) gets its replies in one write, and none is held
// while the server waits for the client.
func TestRepliesLeaveInOneWriteWhenInputIsNeeded(t *testing.T) {
	wc := &writeCounter{in: strings.NewReader("QUIT\r\n")}
	c := &conn{Conn: wc}
	replies := []string{"250 2.0.0 Session reset\r\n", "250 2.0.0 Roger, accepting mail from <a@example.com>\r\n",
		"250 2.0.0 I'll make sure <agent@localhost> gets this\r\n", "354 2.0.0 Go ahead. End your data with <CR><LF>.<CR><LF>\r\n"}
	for _, r := range replies {
		if n, err := c.Write([]byte(r)); n != len(r) || err != nil {
			t.Fatalf("Write = %d, %v", n, err)
		}
	}
	if wc.writes != 0 {
		t.Fatalf("%d writes before the next read, want 0", wc.writes)
	}
	if _, err := c.Read(make([]byte, 64)); err != nil {
		t.Fatal(err)
	}
	if wc.writes != 1 || wc.out.String() != strings.Join(replies, "") {
		t.Fatalf("%d writes of %q, want 1 of every reply", wc.writes, wc.out.String())
	}
	if _, err := c.Read(make([]byte, 64)); err == nil || wc.writes != 1 {
		t.Fatalf("a read with nothing waiting wrote (%d writes) or did not reach EOF (%v)", wc.writes, err)
	}
}

// A group larger than replyBufMax is sent as it grows, not held whole.
func TestRepliesBeyondTheBufferAreSentAtOnce(t *testing.T) {
	wc := &writeCounter{in: strings.NewReader("")}
	c := &conn{Conn: wc}
	line := []byte(strings.Repeat("x", 1000) + "\r\n")
	for range replyBufMax/len(line) + 1 {
		_, _ = c.Write(line)
	}
	if wc.writes != 1 {
		t.Fatalf("%d writes, want 1 once the buffer filled", wc.writes)
	}
}
