package webhook

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// noResolver answers "no such host" for every name, without network.
var noResolver = staticResolver(nil)

func TestCheckURLRefused(t *testing.T) {
	// f checks that raw is refused without allowPrivate with an error
	// matching kind whose message contains want.
	f := func(raw string, kind error, want string) {
		t.Helper()
		u, err := CheckURL(context.Background(), raw, false, noResolver)
		if err == nil {
			t.Fatalf("%q accepted as %v", raw, u)
		}
		if !errors.Is(err, kind) {
			t.Fatalf("%q: error %q does not match %v", raw, err, kind)
		}
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q: error %q does not contain %q", raw, err, want)
		}
	}
	forbidden := func(raw, want string) { t.Helper(); f(raw, ErrForbiddenAddress, want) }
	invalid := func(raw, want string) { t.Helper(); f(raw, ErrInvalidURL, want) }

	// Loopback and unspecified.
	forbidden("http://127.0.0.1/", "address 127.0.0.1 is not allowed (loopback)")
	forbidden("http://127.0.0.53:8080/x", "loopback")
	forbidden("https://127.255.255.254/", "loopback")
	forbidden("http://[::1]/", "loopback")
	forbidden("http://[::1]:9000/", "loopback")
	forbidden("http://0.0.0.0/", "unspecified")
	forbidden("http://0.1.2.3/", "this network")
	forbidden("http://[::]/", "unspecified")
	// RFC 1918.
	forbidden("http://10.0.0.1/", "RFC 1918")
	forbidden("http://10.255.255.255/", "RFC 1918")
	forbidden("http://172.16.0.1/", "RFC 1918")
	forbidden("http://172.31.255.255/", "RFC 1918")
	forbidden("http://192.168.1.1/", "RFC 1918")
	// CGNAT.
	forbidden("http://100.64.0.1/", "CGNAT")
	forbidden("http://100.127.255.254/", "CGNAT")
	// Link-local and cloud metadata.
	forbidden("http://169.254.169.254/latest/meta-data/", "address 169.254.169.254 is not allowed (link-local, cloud metadata)")
	forbidden("http://169.254.0.1/", "link-local")
	forbidden("http://[fe80::1]/", "link-local")
	forbidden("http://[fd00:ec2::254]/", "unique local")
	// IPv6 ULA.
	forbidden("http://[fc00::1]/", "unique local")
	forbidden("http://[fd12:3456:789a::1]/", "unique local")
	// IPv4 carried in IPv6.
	forbidden("http://[::ffff:127.0.0.1]/", "IPv4-mapped loopback")
	forbidden("http://[::ffff:7f00:1]/", "IPv4-mapped loopback")
	forbidden("http://[::ffff:169.254.169.254]/", "IPv4-mapped link-local")
	forbidden("http://[::ffff:10.0.0.1]/", "IPv4-mapped private")
	forbidden("http://[::127.0.0.1]/", "IPv4-compatible")
	forbidden("http://[::7f00:1]/", "IPv4-compatible")
	forbidden("http://[64:ff9b::7f00:1]/", "NAT64 of loopback")
	forbidden("http://[64:ff9b::a9fe:a9fe]/", "NAT64 of link-local")
	forbidden("http://[64:ff9b:1::1]/", "local-use NAT64")
	forbidden("http://[2002:7f00:1::1]/", "6to4 of loopback")
	forbidden("http://[2002:c0a8:101::1]/", "6to4 of private")
	forbidden("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", "Teredo")
	// Multicast, broadcast, reserved, special and documentation ranges.
	forbidden("http://224.0.0.1/", "multicast")
	forbidden("http://239.255.255.250/", "multicast")
	forbidden("http://[ff02::1]/", "multicast")
	forbidden("http://255.255.255.255/", "broadcast")
	forbidden("http://240.0.0.1/", "reserved")
	forbidden("http://192.0.0.170/", "IETF protocol assignments")
	forbidden("http://198.18.0.1/", "benchmarking")
	forbidden("http://198.19.255.255/", "benchmarking")
	forbidden("http://192.0.2.1/", "documentation")
	forbidden("http://198.51.100.7/", "documentation")
	forbidden("http://203.0.113.9/", "documentation")
	forbidden("http://[2001:db8::1]/", "documentation")
	forbidden("http://[3fff::1]/", "documentation")
	forbidden("http://[100::1]/", "discard-only")
	forbidden("http://[fec0::1]/", "site-local")
	forbidden("http://[4000::1]/", "not global unicast")

	// Odd IPv4 spellings are refused whatever they point at.
	invalid("http://2130706433/", `ambiguous IPv4 literal "2130706433"`)
	invalid("http://0x7f000001/", "ambiguous IPv4 literal")
	invalid("http://0X7F000001/", "ambiguous IPv4 literal")
	invalid("http://0177.0.0.1/", "ambiguous IPv4 literal")
	invalid("http://127.1/", "ambiguous IPv4 literal")
	invalid("http://10.1/", "ambiguous IPv4 literal")
	invalid("http://0x7f.0.0.1/", "ambiguous IPv4 literal")
	invalid("http://017700000001/", "ambiguous IPv4 literal")
	invalid("http://127.0.0.1./", "ambiguous IPv4 literal")
	invalid("http://1.2.3.4.5/", "ambiguous IPv4 literal")
	invalid("http://08.8.8.8/", "ambiguous IPv4 literal")
	invalid("http://0x5d.0xb8.0xd8.0x22/", "ambiguous IPv4 literal") // public, still refused

	// Local and metadata names.
	forbidden("http://localhost/", "host localhost is not allowed (local name)")
	forbidden("http://LOCALHOST:8080/", "local name")
	forbidden("http://localhost./", "local name")
	forbidden("http://app.localhost/", "local name")
	forbidden("http://metadata.google.internal/computeMetadata/v1/", "metadata")
	forbidden("http://metadata/", "metadata")
	forbidden("http://service.internal/", "internal name")
	forbidden("http://printer.local/", "multicast DNS")
	forbidden("http://nas.home.arpa/", "home network")
	forbidden("http://1.0.0.127.in-addr.arpa/", "reverse-DNS")
	forbidden("http://intranet/", "single-label")

	// Form: scheme, host, userinfo, fragment, port, length, characters.
	invalid("http://user:pw@example.com/", "credentials")
	invalid("http://user@example.com/", "credentials")
	invalid("https://:pw@example.com/", "credentials")
	invalid("ftp://example.com/", `scheme "ftp" is not allowed`)
	invalid("file:///etc/passwd", `scheme "file" is not allowed`)
	invalid("gopher://example.com:70/_GET", `scheme "gopher" is not allowed`)
	invalid("javascript:alert(1)", `scheme "javascript" is not allowed`)
	invalid("ws://example.com/", `scheme "ws" is not allowed`)
	invalid("example.com/hook", "scheme missing")
	invalid("//example.com/hook", "scheme missing")
	invalid("", "a URL is required")
	invalid("http://", "a host is required")
	invalid("http:///hook", "a host is required")
	invalid("http:example.com", "a host is required")
	invalid("https://example.com/hook#frag", "fragment")
	invalid("https://example.com/#", "fragment")
	invalid("http://exa mple.com/", "space or control character")
	invalid("http://example.com/a b", "space or control character")
	invalid("http://example.com/\x00", "space or control character")
	invalid("http://example.com:0/", "port 0 is out of range")
	invalid("http://example.com:65536/", "port 65536 is out of range")
	invalid("http://example.com:/", "empty port")
	invalid("http://例子.com/", "xn--")
	invalid("http://[fe80::1%25eth0]/", "IPv6 zones")
	invalid("http://ex%41mple.com/", "invalid URL escape")
	invalid("http://exa_mple!.com/", "contains")
	invalid("http://a..b/", "empty label")
	invalid("http://"+strings.Repeat("a", 64)+".com/", "longer than 63")
	invalid("https://example.com/"+strings.Repeat("a", MaxURLLength), "longer than 2048 bytes")
	invalid("http://[::1/", "missing ']'")
}

func TestCheckURLAccepted(t *testing.T) {
	r := staticResolver(map[string][]string{
		"hooks.example.com": {"93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"},
		"api.example.org":   {"8.8.8.8"},
	})
	f := func(raw, wantString string) {
		t.Helper()
		u, err := CheckURL(context.Background(), raw, false, r)
		if err != nil {
			t.Fatalf("%q refused: %v", raw, err)
		}
		if u.String() != wantString {
			t.Fatalf("%q parsed as %q, want %q", raw, u, wantString)
		}
	}
	// Literal public addresses: no resolution.
	f("https://93.184.216.34/x", "https://93.184.216.34/x")
	f("http://8.8.8.8:8080/hook?x=1&y=2", "http://8.8.8.8:8080/hook?x=1&y=2")
	f("https://[2606:4700:4700::1111]/hook", "https://[2606:4700:4700::1111]/hook")
	f("https://[::ffff:93.184.216.34]/", "https://[::ffff:93.184.216.34]/")
	f("https://[2002:5db8:d822::1]/", "https://[2002:5db8:d822::1]/") // 6to4 of 93.184.216.34
	f("https://[64:ff9b::5db8:d822]/", "https://[64:ff9b::5db8:d822]/")
	f("https://1.1.1.1/", "https://1.1.1.1/")
	f("https://172.32.0.1/", "https://172.32.0.1/")   // just past 172.16/12
	f("https://100.128.0.1/", "https://100.128.0.1/") // just past 100.64/10
	f("https://169.255.0.1/", "https://169.255.0.1/") // just past 169.254/16
	f("https://223.255.255.1/", "https://223.255.255.1/")
	// Names resolved through the injected resolver.
	f("https://hooks.example.com/mailwire", "https://hooks.example.com/mailwire")
	f("HTTPS://Hooks.Example.COM:8443/in?token=abc", "https://Hooks.Example.COM:8443/in?token=abc")
	f("https://api.example.org./hook", "https://api.example.org./hook")
	f("https://xn--fsqu00a.xn--0zwm56d/", "https://xn--fsqu00a.xn--0zwm56d/")
	f("https://my_host.example.com/", "https://my_host.example.com/")
	f("https://cafe.face.example/", "https://cafe.face.example/") // hex letters, not a number
	f("https://example.com", "https://example.com")
	// A name that does not resolve is accepted: the dialer checks at connect time.
	f("https://not-yet.example.net/hook", "https://not-yet.example.net/hook")
	// Paths go as written (escaped form).
	f("https://example.com/a%2Fb//c/../d", "https://example.com/a%2Fb//c/../d")
}

func TestCheckURLResolvesNames(t *testing.T) {
	r := staticResolver(map[string][]string{
		"rebind.example.com":   {"127.0.0.1"},
		"mixed.example.com":    {"93.184.216.34", "10.0.0.7"},
		"metadata.example.com": {"169.254.169.254"},
		"mapped.example.com":   {"::ffff:192.168.0.1"},
		"v6.example.com":       {"fd00::1"},
	})
	f := func(raw, want string) {
		t.Helper()
		_, err := CheckURL(context.Background(), raw, false, r)
		if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), want) {
			t.Fatalf("%q: error %v, want ErrForbiddenAddress containing %q", raw, err, want)
		}
	}
	f("https://rebind.example.com/", "address 127.0.0.1 of host rebind.example.com is not allowed (loopback)")
	f("https://mixed.example.com/", "address 10.0.0.7 of host mixed.example.com is not allowed")
	f("https://metadata.example.com/", "169.254.169.254")
	f("https://mapped.example.com/", "address 192.168.0.1 of host mapped.example.com is not allowed (IPv4-mapped private")
	f("https://v6.example.com/", "fd00::1")

	// allowPrivate does not resolve at all.
	var calls atomic.Int32
	counting := resolverFunc(func(context.Context, string, string) ([]netip.Addr, error) {
		calls.Add(1)
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	if _, err := CheckURL(context.Background(), "http://rebind.example.com/", true, counting); err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 0 {
		t.Fatalf("resolver called %d times with allowPrivate", calls.Load())
	}

	// A resolver that hangs is bounded by the context and the URL accepted.
	hang := resolverFunc(func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := CheckURL(ctx, "https://slow-dns.example.com/", false, hang); err != nil {
		t.Fatalf("unresolvable name refused: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("CheckURL took %v with a hanging resolver", d)
	}
}

func TestCheckURLAllowPrivate(t *testing.T) {
	ok := func(raw string) {
		t.Helper()
		if _, err := CheckURL(context.Background(), raw, true, noResolver); err != nil {
			t.Fatalf("%q refused with allowPrivate: %v", raw, err)
		}
	}
	ok("http://127.0.0.1:8080/hook")
	ok("http://[::1]/")
	ok("http://localhost:3000/hook")
	ok("http://10.0.0.1/")
	ok("http://169.254.169.254/")
	ok("http://[::ffff:127.0.0.1]/")
	ok("http://2130706433/")
	ok("http://127.1/")
	ok("http://receiver/")
	ok("http://metadata.google.internal/")

	// Form checks still apply.
	bad := func(raw string) {
		t.Helper()
		if _, err := CheckURL(context.Background(), raw, true, noResolver); !errors.Is(err, ErrInvalidURL) {
			t.Fatalf("%q with allowPrivate: error %v, want ErrInvalidURL", raw, err)
		}
	}
	bad("ftp://127.0.0.1/")
	bad("file:///etc/passwd")
	bad("gopher://localhost/")
	bad("http://user:pw@127.0.0.1/")
	bad("http://127.0.0.1/#x")
	bad("http://[fe80::1%25lo]/")
}

func TestValidateURLDefaultResolver(t *testing.T) {
	// Literals and refused names need no network; this exercises the
	// exported wrapper and its timeout plumbing.
	if _, err := ValidateURL("https://93.184.216.34/x", false); err != nil {
		t.Fatal(err)
	}
	if _, err := ValidateURL("http://127.0.0.1/", false); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("error %v, want ErrForbiddenAddress", err)
	}
	if _, err := ValidateURL("http://localhost/", false); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("error %v, want ErrForbiddenAddress", err)
	}
}

func TestDialerRefusesForbiddenResolvedAddress(t *testing.T) {
	// rebind.example.com resolves to a public address when the URL is saved
	// and to 127.0.0.1 when the dialer connects (DNS rebinding).
	var calls atomic.Int32
	r := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		if calls.Add(1) == 1 {
			return []netip.Addr{netip.MustParseAddr("93.184.216.34")}, nil
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	if _, err := CheckURL(context.Background(), "http://rebind.example.com/", false, r); err != nil {
		t.Fatalf("validation refused the first answer: %v", err)
	}
	d := &Dialer{Resolver: r, Timeout: time.Second}
	conn, err := d.Dial("rebind.example.com:80")
	if err == nil {
		conn.Close()
		t.Fatal("dial to a name resolving to 127.0.0.1 succeeded")
	}
	if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), "address 127.0.0.1 of host rebind.example.com is not allowed") {
		t.Fatalf("error %q, want one naming 127.0.0.1", err)
	}
	var fe *ForbiddenAddressError
	if !errors.As(err, &fe) || fe.Addr != netip.MustParseAddr("127.0.0.1") {
		t.Fatalf("error %#v does not carry the address", err)
	}

	f := func(d *Dialer, addr, want string) {
		t.Helper()
		conn, err := d.DialTimeout(addr, time.Second)
		if err == nil {
			conn.Close()
			t.Fatalf("dial %s succeeded", addr)
		}
		if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), want) {
			t.Fatalf("dial %s: error %q, want ErrForbiddenAddress containing %q", addr, err, want)
		}
	}
	all := &Dialer{Resolver: staticResolver(map[string][]string{
		"private.example.com": {"10.1.2.3", "192.168.0.1", "::1"},
		"mapped.example.com":  {"::ffff:127.0.0.1"},
	})}
	f(all, "127.0.0.1:80", "address 127.0.0.1 is not allowed (loopback)")
	f(all, "[::1]:80", "address ::1 is not allowed")
	f(all, "[::ffff:127.0.0.1]:80", "address 127.0.0.1 is not allowed (IPv4-mapped loopback)")
	f(all, "169.254.169.254:80", "169.254.169.254")
	f(all, "private.example.com:443", "address 10.1.2.3 of host private.example.com")
	f(all, "mapped.example.com:443", "address 127.0.0.1 of host mapped.example.com")
	f(all, "localhost:80", "host localhost is not allowed")
	f(all, "2130706433:80", "ambiguous IPv4 literal")
	f(all, "0x7f000001:80", "ambiguous IPv4 literal")
}

func TestDialerDefaultResolverLocalhost(t *testing.T) {
	// "localhost" through the real resolver path: refused by name before
	// any lookup, and with AllowPrivate it connects to a real listener.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	if _, err := (&Dialer{}).Dial("localhost:" + port); !errors.Is(err, ErrForbiddenAddress) {
		t.Fatalf("localhost dial: error %v, want ErrForbiddenAddress", err)
	}
}

func TestDialerAllowPrivateConnectsByAddress(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)

	// hook.invalid exists in no DNS: reaching the listener proves the
	// dialer connected to the resolved address, not the name, and resolved
	// again for every connection.
	var calls atomic.Int32
	r := resolverFunc(func(_ context.Context, _, host string) ([]netip.Addr, error) {
		calls.Add(1)
		if host != "hook.invalid" {
			return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
		}
		return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
	})
	d := &Dialer{AllowPrivate: true, Resolver: r, Timeout: time.Second}
	for i := range 2 {
		conn, err := d.Dial("hook.invalid:" + port)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		if got := conn.RemoteAddr().String(); got != "127.0.0.1:"+port {
			t.Fatalf("connected to %s", got)
		}
		conn.Close()
		if c, err := ln.Accept(); err != nil {
			t.Fatal(err)
		} else {
			c.Close()
		}
	}
	if calls.Load() != 2 {
		t.Fatalf("resolver called %d times for 2 dials, want 2 (no cache)", calls.Load())
	}

	// Literal and localhost with AllowPrivate.
	for _, addr := range []string{"127.0.0.1:" + port, "localhost:" + port} {
		conn, err := (&Dialer{AllowPrivate: true, Timeout: time.Second}).Dial(addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		conn.Close()
		if c, err := ln.Accept(); err != nil {
			t.Fatal(err)
		} else {
			c.Close()
		}
	}
}

func TestDialerBoundedByTimeout(t *testing.T) {
	hang := resolverFunc(func(ctx context.Context, _, _ string) ([]netip.Addr, error) {
		<-ctx.Done()
		return nil, ctx.Err()
	})
	d := &Dialer{Resolver: hang, Timeout: 5 * time.Second}
	start := time.Now()
	_, err := d.DialTimeout("slow.example.com:80", 100*time.Millisecond)
	if err == nil || !isTimeout(err) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v, want a timeout", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("dial took %v, want about 100ms", el)
	}
	// Dialer.Timeout caps a longer caller timeout, and applies when none is given.
	d.Timeout = 100 * time.Millisecond
	start = time.Now()
	if _, err := d.DialTimeout("slow.example.com:80", time.Hour); err == nil {
		t.Fatal("dial succeeded")
	}
	if _, err := d.Dial("slow.example.com:80"); err == nil {
		t.Fatal("dial succeeded")
	}
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("two dials took %v, want about 200ms", el)
	}
}

func TestForbiddenReasonTable(t *testing.T) {
	f := func(addr string, forbidden bool) {
		t.Helper()
		reason := forbiddenReason(netip.MustParseAddr(addr))
		if (reason != "") != forbidden {
			t.Fatalf("%s: reason %q, want forbidden=%v", addr, reason, forbidden)
		}
	}
	f("127.0.0.1", true)
	f("126.255.255.255", false)
	f("128.0.0.0", false)
	f("9.255.255.255", false)
	f("11.0.0.0", false)
	f("172.15.255.255", false)
	f("172.32.0.0", false)
	f("192.167.255.255", false)
	f("192.169.0.0", false)
	f("100.63.255.255", false)
	f("100.128.0.0", false)
	f("198.17.255.255", false)
	f("198.20.0.0", false)
	f("223.255.255.255", false)
	f("224.0.0.0", true)
	f("fe80::1%eth0", true)
	f("2001:4860:4860::8888", false)
	f("2a00:1450:4001::1", false)
	f("2002:808:808::1", false) // 6to4 of 8.8.8.8
	f("2002:a00:1::1", true)    // 6to4 of 10.0.0.1
	f("::ffff:8.8.8.8", false)
	f("::ffff:0.0.0.0", true)
	f("::8.8.8.8", true) // IPv4-compatible, deprecated and unroutable
}

// inetAton is the classic BSD parser that accepts 1-4 parts in decimal,
// octal or hex; the fuzz target uses it to find hosts some resolver would
// read as an IPv4 address.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) < 1 || len(parts) > 4 {
		return netip.Addr{}, false
	}
	vals := make([]uint64, len(parts))
	for i, p := range parts {
		if p == "" {
			return netip.Addr{}, false
		}
		base := 10
		switch {
		case len(p) > 1 && (p[:2] == "0x" || p[:2] == "0X"):
			base, p = 16, p[2:]
			if p == "" {
				p = "0"
			}
		case len(p) > 1 && p[0] == '0':
			base = 8
		}
		v, err := strconv.ParseUint(p, base, 32)
		if err != nil {
			return netip.Addr{}, false
		}
		vals[i] = v
	}
	var n uint64
	last := len(vals) - 1
	for i, v := range vals[:last] {
		if v > 255 {
			return netip.Addr{}, false
		}
		n |= v << (24 - 8*i)
	}
	if vals[last] >= 1<<(8*(4-last)) {
		return netip.Addr{}, false
	}
	n |= vals[last]
	return netip.AddrFrom4([4]byte{byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}), true
}

func TestInetAton(t *testing.T) {
	f := func(s, want string) {
		t.Helper()
		a, ok := inetAton(s)
		if want == "" {
			if ok {
				t.Fatalf("%q parsed as %v", s, a)
			}
			return
		}
		if !ok || a.String() != want {
			t.Fatalf("%q = %v, %v; want %s", s, a, ok, want)
		}
	}
	f("2130706433", "127.0.0.1")
	f("0x7f000001", "127.0.0.1")
	f("0177.0.0.1", "127.0.0.1")
	f("127.1", "127.0.0.1")
	f("10.1", "10.0.0.1")
	f("1.2.3.4", "1.2.3.4")
	f("example.com", "")
}

// looselyForbidden is an independent, coarser statement of the policy:
// netip's own predicates plus the ranges a fuzzer is likely to hit.
func looselyForbidden(a netip.Addr) bool {
	a = a.Unmap()
	return a.IsLoopback() || a.IsPrivate() || a.IsUnspecified() || a.IsLinkLocalUnicast() ||
		a.IsLinkLocalMulticast() || a.IsMulticast() || a.IsInterfaceLocalMulticast() ||
		netip.MustParsePrefix("100.64.0.0/10").Contains(a) || netip.MustParsePrefix("0.0.0.0/8").Contains(a) ||
		netip.MustParsePrefix("240.0.0.0/4").Contains(a)
}

func FuzzValidateURL(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1/", "http://[::ffff:127.0.0.1]/", "http://[::ffff:7f00:1]/", "http://2130706433/",
		"http://0x7f000001/", "http://0177.0.0.1/", "http://127.1/", "http://10.1/", "http://user:pw@example.com/",
		"ftp://example.com/", "file:///etc/passwd", "gopher://example.com/", "https://93.184.216.34/x",
		"http://[fe80::1%25eth0]/", "http://localhost./", "http://[64:ff9b::7f00:1]/", "http://[2002:7f00:1::1]/",
		"https://hooks.example.com:8443/a?b=c", "http://169.254.169.254/latest", "http://[::1]:80/",
		"http://0x7f.1/", "http://1.2.3.4.5/", "https://example.com/#frag", "http://[::]/", "HTTP://A.B/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		_, _ = CheckURL(context.Background(), raw, true, noResolver) // must not panic
		u, err := CheckURL(context.Background(), raw, false, noResolver)
		if err != nil {
			if !errors.Is(err, ErrInvalidURL) && !errors.Is(err, ErrForbiddenAddress) {
				t.Fatalf("%q: error %v matches neither ErrInvalidURL nor ErrForbiddenAddress", raw, err)
			}
			return
		}
		if u.Scheme != "http" && u.Scheme != "https" || u.User != nil || u.Host == "" {
			t.Fatalf("%q accepted as %#v", raw, u)
		}
		host := u.Hostname()
		if a, err := netip.ParseAddr(host); err == nil && looselyForbidden(a) {
			t.Fatalf("%q accepted with forbidden literal host %s", raw, a)
		}
		if a, ok := inetAton(strings.TrimSuffix(host, ".")); ok && (host != a.String() || looselyForbidden(a)) {
			t.Fatalf("%q accepted with host %q, which inet_aton reads as %s", raw, host, a)
		}
		// What CheckURL returns is what gets stored: it must pass again.
		if _, err := CheckURL(context.Background(), u.String(), false, noResolver); err != nil {
			t.Fatalf("%q accepted but its stored form %q is refused: %v", raw, u.String(), err)
		}
	})
}
