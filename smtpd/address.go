package smtpd

import (
	"strings"
	"unicode/utf8"
)

// rcptVerdict is what a RCPT TO path names.
type rcptVerdict int

const (
	rcptLocal       rcptVerdict = iota // a mailbox name of our domain (which may not exist)
	rcptNotMailbox                     // our domain, but no inbox can have that name
	rcptOtherDomain                    // not our domain
)

// parseRecipient maps a RCPT TO path, as go-smtp hands it over (angle
// brackets and source route removed, a quoted local part unquoted), to the
// mailbox name it names in domain (lower case) and the address to record as
// the message's To: the lower-cased mailbox name, the +tag exactly as sent,
// and domain. Mailbox names are API.md's: 3-30 of a-z 0-9 . _ - .
func parseRecipient(path, domain string) (mailbox, addr string, v rcptVerdict) {
	at := strings.LastIndexByte(path, '@')
	if at < 0 {
		// RFC 5321's bare "Postmaster" has no domain; we have no such inbox.
		return "", "", rcptNotMailbox
	}
	local, dom := path[:at], path[at+1:]
	if !strings.EqualFold(strings.TrimSuffix(dom, "."), domain) {
		return "", "", rcptOtherDomain
	}
	if len(local) > maxLocalPart {
		return "", "", rcptNotMailbox
	}
	base, tag, tagged := strings.Cut(local, "+")
	mailbox = strings.ToLower(base)
	if !validMailboxName(mailbox) || (tagged && !validTag(tag)) {
		return "", "", rcptNotMailbox
	}
	if tagged {
		return mailbox, mailbox + "+" + tag + "@" + domain, rcptLocal
	}
	return mailbox, mailbox + "@" + domain, rcptLocal
}

// recipient is parseRecipient over every domain the server serves; it
// also returns the domain the path named.
func (s *Server) recipient(path string) (mailbox, addr, domain string, v rcptVerdict) {
	for _, d := range s.domains {
		if mailbox, addr, v = parseRecipient(path, d); v != rcptOtherDomain {
			return mailbox, addr, d, v
		}
	}
	return "", "", "", rcptOtherDomain
}

func validMailboxName(s string) bool {
	if len(s) < 3 || len(s) > 30 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// validTag accepts RFC 5322 atext and dots, and (SMTPUTF8) any non-ASCII
// UTF-8: what a dot-atom local part can carry. Quoted-string oddities
// (spaces, '@', '"') are refused rather than recorded as an address.
func validTag(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		switch {
		case r >= utf8.RuneSelf:
			if r == utf8.RuneError || r == '\u0085' || r == '\u2028' || r == '\u2029' || (r >= 0x80 && r < 0xa0) {
				return false
			}
		case 'a' <= r && r <= 'z', 'A' <= r && r <= 'Z', '0' <= r && r <= '9':
		case strings.ContainsRune("!#$%&'*+-/=?^_`{|}~.", r):
		default:
			return false
		}
	}
	return true
}
