package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The SSRF guard has two halves that apply one policy:
//
//   - ValidateURL runs when a user saves a URL. It refuses what is wrong in
//     the text itself (scheme, userinfo, odd IP spellings, local names,
//     literal addresses in forbidden ranges) and, best effort, names that
//     resolve to a forbidden address now.
//   - Dialer runs on every new connection. It resolves the name again, keeps
//     only allowed addresses and connects to one of them by address, so a
//     name that changes its answer after validation (DNS rebinding) is
//     caught where it matters.
//
// The dialer is the real defence; validation exists to give the user a clear
// 422 early.

var (
	// ErrInvalidURL is wrapped by every error about the form of a URL.
	ErrInvalidURL = errors.New("invalid webhook URL")
	// ErrForbiddenAddress is matched (errors.Is) by every refusal of a host
	// or an address by the SSRF policy; the error's message names it.
	ErrForbiddenAddress = errors.New("address not allowed")
)

// ForbiddenAddressError is a host or an address refused by the SSRF policy.
// errors.Is(err, ErrForbiddenAddress) holds for it.
type ForbiddenAddressError struct {
	Host   string     // the host as written in the URL, when a name
	Addr   netip.Addr // the refused address; invalid when the name itself is refused
	Reason string     // why, e.g. "loopback"
}

func (e *ForbiddenAddressError) Error() string {
	switch {
	case !e.Addr.IsValid():
		return fmt.Sprintf("host %s is not allowed (%s)", e.Host, e.Reason)
	case e.Host == "" || e.Host == e.Addr.String():
		return fmt.Sprintf("address %s is not allowed (%s)", e.Addr, e.Reason)
	default:
		return fmt.Sprintf("address %s of host %s is not allowed (%s)", e.Addr, e.Host, e.Reason)
	}
}

// Is makes errors.Is(err, ErrForbiddenAddress) true.
func (e *ForbiddenAddressError) Is(target error) bool { return target == ErrForbiddenAddress }

func invalidURL(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidURL, fmt.Sprintf(format, args...))
}

// Resolver looks up a host's addresses. *net.Resolver implements it; tests
// inject their own.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// ValidateURL checks a webhook URL a user wants to save, resolving its host
// with net.DefaultResolver within 2 s. See CheckURL.
func ValidateURL(raw string, allowPrivate bool) (*url.URL, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	return CheckURL(ctx, raw, allowPrivate, nil)
}

// CheckURL checks a webhook URL a user wants to save and returns it parsed;
// store u.String(). Errors wrap ErrInvalidURL or match ErrForbiddenAddress,
// and their message says what was wrong, fit for a 422 answer.
//
// Always: at most MaxURLLength bytes; no spaces or control characters;
// scheme http or https; a host; no userinfo ("user:pw@"); no fragment ("#",
// refused rather than dropped, so the saved URL is exactly the one posted
// to); a port, when given, in 1-65535; an ASCII host (IDNs in their xn--
// form), no IPv6 zone, no percent-encoding in the host.
//
// Unless allowPrivate:
//   - a literal IP in a forbidden range (see forbiddenReason) is refused;
//   - a host made only of numbers and dots ("2130706433", "0x7f000001",
//     "0177.0.0.1", "127.1") that is not a canonical dotted quad is refused
//     as an ambiguous IPv4 literal, whatever it would mean, because
//     resolvers disagree on these spellings;
//   - local and metadata names are refused: single-label names (they resolve
//     through search domains to internal hosts), "localhost" and names under
//     .localhost, .local, .localdomain, .internal (metadata.google.internal
//     and every cloud's internal zone; ICANN reserved .internal for private
//     use), .home.arpa, and the reverse-DNS zones;
//   - the name is resolved with r (nil = net.DefaultResolver) within ctx:
//     if any address is forbidden the URL is refused. If the name does not
//     resolve (no such host, timeout) the URL is accepted: receivers are
//     sometimes configured before their DNS exists, and the dialer checks
//     every address again at connect time anyway.
func CheckURL(ctx context.Context, raw string, allowPrivate bool, r Resolver) (*url.URL, error) {
	u, host, err := checkURLText(raw, allowPrivate)
	if err != nil || allowPrivate {
		return u, err
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return u, nil // a literal, judged by checkURLText
	}
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return u, nil // best effort: see the doc comment
	}
	for _, a := range addrs {
		if reason := forbiddenReason(a); reason != "" {
			return nil, &ForbiddenAddressError{Host: host, Addr: a.Unmap(), Reason: reason}
		}
	}
	return u, nil
}

// checkURLText applies every check of CheckURL that needs no network. The
// client runs it before each attempt too, so a URL saved under older rules
// cannot bypass newer ones. host is the hostname, lowercase, unbracketed.
func checkURLText(raw string, allowPrivate bool) (u *url.URL, host string, err error) {
	if raw == "" {
		return nil, "", invalidURL("a URL is required")
	}
	if len(raw) > MaxURLLength {
		return nil, "", invalidURL("longer than %d bytes", MaxURLLength)
	}
	for i := 0; i < len(raw); i++ {
		if c := raw[i]; c <= ' ' || c == 0x7f {
			return nil, "", invalidURL("contains a space or control character at byte %d", i)
		}
	}
	if strings.IndexByte(raw, '#') >= 0 {
		return nil, "", invalidURL("contains a fragment (#...), which is never sent to the receiver: remove it")
	}
	u, err = url.Parse(raw)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is the user's own input: do not repeat it
		}
		return nil, "", invalidURL("%v", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return nil, "", invalidURL("scheme missing: use http:// or https://")
		}
		return nil, "", invalidURL("scheme %q is not allowed: use http or https", u.Scheme)
	}
	if u.Opaque != "" || u.Host == "" {
		return nil, "", invalidURL("a host is required, as in https://example.com/hook")
	}
	if u.User != nil {
		return nil, "", invalidURL("credentials in the URL (user:password@) are not allowed")
	}
	if strings.IndexByte(u.Host, '%') >= 0 {
		return nil, "", invalidURL("percent-encoding and IPv6 zones are not allowed in the host")
	}
	if strings.HasSuffix(u.Host, ":") {
		return nil, "", invalidURL("empty port after ':'")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return nil, "", invalidURL("port %s is out of range 1-65535", p)
		}
	}
	host = strings.ToLower(u.Hostname())
	if host == "" {
		return nil, "", invalidURL("a host is required, as in https://example.com/hook")
	}

	if a, err := netip.ParseAddr(host); err == nil {
		if !allowPrivate {
			if reason := forbiddenReason(a); reason != "" {
				return nil, "", &ForbiddenAddressError{Addr: a, Reason: reason}
			}
		}
		return u, host, nil
	}
	if strings.IndexByte(host, ':') >= 0 || strings.IndexByte(u.Host, '[') >= 0 {
		return nil, "", invalidURL("bad IPv6 address %q", host)
	}
	if isNumericHost(host) {
		if allowPrivate {
			return u, host, nil
		}
		return nil, "", invalidURL("ambiguous IPv4 literal %q: write the address as a dotted quad like 192.0.2.1", host)
	}
	if err := checkHostname(host); err != nil {
		return nil, "", err
	}
	if !allowPrivate {
		if reason := localNameReason(host); reason != "" {
			return nil, "", &ForbiddenAddressError{Host: host, Reason: reason}
		}
	}
	return u, host, nil
}

// isNumericHost reports whether host reads as an IPv4 address to inet_aton
// and its relatives: one to four dot-separated parts, each decimal, octal
// (leading 0) or hex (0x). Such a host is never a usable DNS name (a
// top-level domain is never numeric), so it is judged as an address.
func isNumericHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	if host == "" {
		return false
	}
	for part := range strings.SplitSeq(host, ".") {
		if part == "" {
			return false
		}
		digits := part
		hex := false
		if len(part) >= 2 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X') {
			digits, hex = part[2:], true
		}
		for i := 0; i < len(digits); i++ {
			c := digits[i]
			isDigit := c >= '0' && c <= '9'
			isHex := hex && (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F')
			if !isDigit && !isHex {
				return false
			}
		}
	}
	return true
}

// checkHostname refuses names that DNS cannot carry as they are.
func checkHostname(host string) error {
	name := strings.TrimSuffix(host, ".")
	if len(name) > 253 {
		return invalidURL("host name longer than 253 bytes")
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			return invalidURL("host %q has an empty label", host)
		}
		if len(label) > 63 {
			return invalidURL("host %q has a label longer than 63 bytes", host)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			case c >= 0x80:
				return invalidURL("host %q is not ASCII: write an internationalised name in its xn-- form", host)
			default:
				return invalidURL("host %q contains %q", host, c)
			}
		}
	}
	return nil
}

// localNames are names refused as they are: they name the machine itself or
// a cloud metadata service.
var localNames = map[string]string{
	"localhost":                "local name",
	"metadata":                 "cloud metadata name",
	"metadata.google.internal": "cloud metadata name",
	"instance-data":            "cloud metadata name",
}

// localSuffixes are zones whose names resolve only inside a private network.
var localSuffixes = []struct{ suffix, reason string }{
	{".localhost", "local name"},
	{".local", "multicast DNS name"},
	{".localdomain", "local name"},
	{".internal", "internal name"},
	{".home.arpa", "home network name"},
	{".in-addr.arpa", "reverse-DNS name"},
	{".ip6.arpa", "reverse-DNS name"},
}

// localNameReason says why a (lowercase) host name is refused, or "".
func localNameReason(host string) string {
	name := strings.TrimSuffix(host, ".")
	if reason, ok := localNames[name]; ok {
		return reason
	}
	for _, s := range localSuffixes {
		if strings.HasSuffix(name, s.suffix) {
			return s.reason
		}
	}
	if strings.IndexByte(name, '.') < 0 {
		return "single-label name, resolved through local search domains"
	}
	return ""
}

type prefixReason struct {
	p      netip.Prefix
	reason string
}

func pr(s, reason string) prefixReason { return prefixReason{netip.MustParsePrefix(s), reason} }

// forbidden4 are the IPv4 ranges a webhook may not reach (IANA special-purpose
// registry, minus nothing: none of them hosts a public receiver).
var forbidden4 = []prefixReason{
	pr("0.0.0.0/8", "unspecified or this network"),
	pr("10.0.0.0/8", "private network (RFC 1918)"),
	pr("100.64.0.0/10", "shared address space (CGNAT)"),
	pr("127.0.0.0/8", "loopback"),
	pr("169.254.0.0/16", "link-local, cloud metadata"),
	pr("172.16.0.0/12", "private network (RFC 1918)"),
	pr("192.0.0.0/24", "IETF protocol assignments"),
	pr("192.0.2.0/24", "documentation range"),
	pr("192.88.99.0/24", "6to4 relay anycast"),
	pr("192.168.0.0/16", "private network (RFC 1918)"),
	pr("198.18.0.0/15", "benchmarking range"),
	pr("198.51.100.0/24", "documentation range"),
	pr("203.0.113.0/24", "documentation range"),
	pr("224.0.0.0/4", "multicast"),
	pr("255.255.255.255/32", "broadcast"),
	pr("240.0.0.0/4", "reserved"),
}

// IPv6 is judged by an allow list: only global unicast space (2000::/3) is
// routable on the internet, minus the blocks below; NAT64, 6to4 and
// IPv4-mapped addresses are judged by the IPv4 address they carry.
var (
	global6   = netip.MustParsePrefix("2000::/3")
	nat64     = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour = netip.MustParsePrefix("2002::/16")
)

var forbidden6 = []prefixReason{
	pr("2001::/23", "IETF protocol assignments (Teredo, benchmarking, ORCHID)"),
	pr("2001:db8::/32", "documentation range"),
	pr("3fff::/20", "documentation range"),
}

var reasons6 = []prefixReason{
	pr("::/128", "unspecified"),
	pr("::1/128", "loopback"),
	pr("::/96", "IPv4-compatible (deprecated)"),
	pr("64:ff9b:1::/48", "local-use NAT64"),
	pr("100::/64", "discard-only"),
	pr("fc00::/7", "unique local (IPv6 ULA)"),
	pr("fe80::/10", "link-local"),
	pr("fec0::/10", "site-local (deprecated)"),
	pr("ff00::/8", "multicast"),
}

// forbiddenReason says why a webhook may not connect to a, or "" when it
// may. The ranges are unspecified, loopback, RFC 1918, CGNAT, link-local
// (cloud metadata 169.254.169.254), IPv6 ULA and link-local, multicast,
// broadcast, IETF protocol assignments, benchmarking, documentation and
// reserved space; IPv4 carried in IPv6 (mapped ::ffff:0:0/96, NAT64
// 64:ff9b::/96, 6to4 2002::/16) is judged by the IPv4 address.
func forbiddenReason(a netip.Addr) string {
	a = a.WithZone("")
	switch {
	case !a.IsValid():
		return "invalid address"
	case a.Is4():
		return reason4(a)
	case a.Is4In6():
		if r := reason4(a.Unmap()); r != "" {
			return "IPv4-mapped " + r
		}
		return ""
	case nat64.Contains(a):
		b := a.As16()
		if r := reason4(netip.AddrFrom4([4]byte(b[12:16]))); r != "" {
			return "NAT64 of " + r
		}
		return ""
	case sixToFour.Contains(a):
		b := a.As16()
		if r := reason4(netip.AddrFrom4([4]byte(b[2:6]))); r != "" {
			return "6to4 of " + r
		}
		return ""
	}
	for _, f := range forbidden6 {
		if f.p.Contains(a) {
			return f.reason
		}
	}
	if global6.Contains(a) {
		return ""
	}
	for _, f := range reasons6 {
		if f.p.Contains(a) {
			return f.reason
		}
	}
	return "not global unicast"
}

func reason4(a netip.Addr) string {
	for _, f := range forbidden4 {
		if f.p.Contains(a) {
			return f.reason
		}
	}
	return ""
}

// Dialer connects to webhook receivers under the SSRF policy. Its methods fit
// fasthttp.DialFunc and fasthttp.DialFuncWithTimeout. It keeps no state and
// is safe for concurrent use.
//
// Every call resolves the host afresh (no cache), drops every forbidden
// address, and connects by address to the allowed ones in the resolver's
// order until one answers; the name itself is never dialed. When no address
// is allowed it returns a *ForbiddenAddressError naming the first refused
// address.
type Dialer struct {
	// AllowPrivate lifts the address and name checks (local development,
	// tests). Zero value: the checks apply.
	AllowPrivate bool
	// Resolver resolves host names. nil: net.DefaultResolver.
	Resolver Resolver
	// Timeout bounds resolving and connecting together when the caller gives
	// no timeout, and caps the caller's. Zero: 15 s.
	Timeout time.Duration
}

// Dial connects to addr ("host:port") within d.Timeout.
func (d *Dialer) Dial(addr string) (net.Conn, error) {
	return d.DialTimeout(addr, 0)
}

// DialTimeout connects to addr ("host:port") within timeout (capped by
// d.Timeout; zero = d.Timeout).
func (d *Dialer) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	limit := d.Timeout
	if limit <= 0 {
		limit = defaultDialTimeout
	}
	if timeout <= 0 || timeout > limit {
		timeout = limit
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return d.DialContext(ctx, addr)
}

// DialContext connects to addr ("host:port") before ctx ends.
func (d *Dialer) DialContext(ctx context.Context, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("cannot dial %q: %w", addr, err)
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil || port == 0 {
		return nil, fmt.Errorf("cannot dial %q: bad port", addr)
	}
	addrs, literal, err := d.resolve(ctx, host)
	if err != nil {
		return nil, err
	}
	name := host
	if literal {
		name = ""
	}
	allowed := make([]netip.Addr, 0, len(addrs))
	var refused error
	for _, a := range addrs {
		if !d.AllowPrivate {
			if reason := forbiddenReason(a); reason != "" {
				if refused == nil {
					refused = &ForbiddenAddressError{Host: name, Addr: a.Unmap(), Reason: reason}
				}
				continue
			}
		}
		allowed = append(allowed, a.Unmap())
	}
	if len(allowed) == 0 {
		if refused != nil {
			return nil, refused
		}
		return nil, fmt.Errorf("cannot resolve %s: no addresses", host)
	}

	var nd net.Dialer
	var firstErr error
	for i, a := range allowed {
		actx := ctx
		if left := len(allowed) - i; left > 1 {
			if dl, ok := ctx.Deadline(); ok {
				part := time.Until(dl) / time.Duration(left)
				part = max(part, minAddrDialTimeout)
				var cancel context.CancelFunc
				actx, cancel = context.WithTimeout(ctx, part)
				defer cancel()
			}
		}
		conn, err := nd.DialContext(actx, "tcp", netip.AddrPortFrom(a, uint16(port)).String())
		if err == nil {
			return conn, nil
		}
		if firstErr == nil {
			firstErr = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, firstErr
}

// resolve returns the addresses of host: itself when it is a literal
// (literal true), otherwise what the resolver answers, after the name policy.
func (d *Dialer) resolve(ctx context.Context, host string) (addrs []netip.Addr, literal bool, err error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{a}, true, nil
	}
	name := strings.ToLower(host)
	if !d.AllowPrivate {
		if isNumericHost(name) {
			return nil, false, &ForbiddenAddressError{Host: host, Reason: "ambiguous IPv4 literal"}
		}
		if reason := localNameReason(name); reason != "" {
			return nil, false, &ForbiddenAddressError{Host: host, Reason: reason}
		}
	}
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	addrs, err = r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return nil, false, fmt.Errorf("cannot resolve %s: %w", host, err)
	}
	return addrs, false, nil
}
