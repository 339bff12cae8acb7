package smtpd

import (
	"net"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRecipient(t *testing.T) {
	f := func(path, wantMailbox, wantAddr string, wantVerdict rcptVerdict) {
		t.Helper()
		mb, addr, v := parseRecipient(path, "mail.test")
		if mb != wantMailbox || addr != wantAddr || v != wantVerdict {
			t.Errorf("parseRecipient(%q) = %q, %q, %d; want %q, %q, %d", path, mb, addr, v, wantMailbox, wantAddr, wantVerdict)
		}
	}
	f("agent@mail.test", "agent", "agent@mail.test", rcptLocal)
	f("Agent@MAIL.Test", "agent", "agent@mail.test", rcptLocal)
	f("agent@mail.test.", "agent", "agent@mail.test", rcptLocal)
	f("agent+Orders-42@mail.test", "agent", "agent+Orders-42@mail.test", rcptLocal)
	f("agent+@mail.test", "agent", "agent+@mail.test", rcptLocal)
	f("agent+a+b@mail.test", "agent", "agent+a+b@mail.test", rcptLocal)
	f("agent+tëst@mail.test", "agent", "agent+tëst@mail.test", rcptLocal)
	f("first.last_1-2@mail.test", "first.last_1-2", "first.last_1-2@mail.test", rcptLocal)
	f("agent@other.test", "", "", rcptOtherDomain)
	f("agent@sub.mail.test", "", "", rcptOtherDomain)
	f("agent@[127.0.0.1]", "", "", rcptOtherDomain)
	f("postmaster", "", "", rcptNotMailbox)
	f("ab@mail.test", "", "", rcptNotMailbox)
	f(strings.Repeat("a", 31)+"@mail.test", "", "", rcptNotMailbox)
	f(strings.Repeat("a", 30)+"+"+strings.Repeat("t", 40)+"@mail.test", "", "", rcptNotMailbox) // local part > 64
	f("agënt@mail.test", "", "", rcptNotMailbox)
	f("agent x@mail.test", "", "", rcptNotMailbox)
	f("agent+a b@mail.test", "", "", rcptNotMailbox)
	f("agent+a@b@mail.test", "", "", rcptNotMailbox)
	f("agent+\x01@mail.test", "", "", rcptNotMailbox)
	f("agent+\xff@mail.test", "", "", rcptNotMailbox)
	f("@mail.test", "", "", rcptNotMailbox)
}

func TestClientKey(t *testing.T) {
	f := func(addr, want string) {
		t.Helper()
		got := clientKey(net.TCPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
		if got != netip.MustParseAddr(want) {
			t.Errorf("clientKey(%s) = %s, want %s", addr, got, want)
		}
	}
	f("127.0.0.1:25", "127.0.0.1")
	f("[::ffff:192.0.2.7]:25", "192.0.2.7")
	f("[2001:db8:1:2:3:4:5:6]:25", "2001:db8:1:2::")
	f("[2001:db8:1:2:ffff::1]:25", "2001:db8:1:2::")
	f("[fe80::1%eth0]:25", "fe80::")
}

// FuzzParseRecipient: whatever the path, an accepted recipient names a
// valid mailbox, its address is in our domain and parses back to itself.
func FuzzParseRecipient(f *testing.F) {
	for _, s := range []string{"agent@mail.test", "AGENT+x@Mail.Test.", "a+b+c@mail.test", "x@y", "postmaster", "agent+ü@mail.test"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		mb, addr, v := parseRecipient(path, "mail.test")
		if v != rcptLocal {
			if mb != "" || addr != "" {
				t.Fatalf("refused %q but returned %q, %q", path, mb, addr)
			}
			return
		}
		if !validMailboxName(mb) || !strings.HasSuffix(addr, "@mail.test") {
			t.Fatalf("%q gave mailbox %q, address %q", path, mb, addr)
		}
		mb2, addr2, v2 := parseRecipient(addr, "mail.test")
		if v2 != rcptLocal || mb2 != mb || addr2 != addr {
			t.Fatalf("address %q of %q parses to %q, %q, %d", addr, path, mb2, addr2, v2)
		}
	})
}
