// Package ingest turns inbound mail into stored messages and
// message.received events. Both edges (SMTP and the HTTP inbound API) call
// it; it parses the message, resolves its thread, writes message and event
// in one synced Pebble batch (the store writes a large message's raw bytes
// and attachments as tables first), and only then hands the event to
// delivery.
//
// Concurrency: a *Service is safe for concurrent use; concurrent callers
// share fsyncs through the store's commit pipeline. Requests with the same
// idempotency key for the same inbox are serialised by a striped mutex so
// the second sees the first's reply.
package ingest

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/mailwire/mailwire/internal/confcheck"
	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/mailparse"
	"github.com/mailwire/mailwire/store"
)

// EventMessageReceived is the only event type produced from mail.
const EventMessageReceived = store.EventMessageReceived

// AttachmentURL is the API path of an attachment.
func AttachmentURL(msgID, filename string) string { return store.AttachmentURL(msgID, filename) }

// Errors a caller maps to client-visible answers.
var (
	// ErrTooLarge: the message exceeds Config.MaxMessageSize.
	ErrTooLarge = errors.New("message too large")
	// ErrInvalid wraps a description of what is wrong with the input.
	ErrInvalid = errors.New("invalid message")
	// ErrIdempotencyMismatch: an Idempotency-Key was reused with a
	// different request body.
	ErrIdempotencyMismatch = errors.New("the Idempotency-Key was used before with a different request")
)

// DefaultMaxMessageSize is the largest inbound message by default
// (--max-message-size, 25 MiB): the one home of the limit the HTTP and
// SMTP edges enforce too.
const DefaultMaxMessageSize = 25 << 20

// Config configures a Service. DefaultConfig holds the defaults; a zero
// field takes its default too. The fields a flag sets name it
// (CONFIG.md), as Validate's messages do.
type Config struct {
	// MailDomain is the default domain of inbox addresses (an inbox
	// created without a domain has it): the first --mail-domain. Default
	// "localhost".
	MailDomain string
	// OtherDomains are further domains the server serves: an inbox may be
	// created on any of them (store.Inbox.Domain); the rest of
	// --mail-domain. Default none.
	OtherDomains []string
	// MaxMessageSize is the largest raw message accepted, in bytes
	// (--max-message-size; the node applies it to SMTP and HTTP as well).
	// Default DefaultMaxMessageSize.
	MaxMessageSize int
	// Limits bound MIME parsing work (MaxParts: --max-mime-parts).
	Limits mailparse.Limits
}

// DefaultConfig is CONFIG.md's defaults: domain localhost, 25 MiB
// messages, mailparse.DefaultMaxParts parts.
func DefaultConfig() Config {
	return Config{
		MailDomain:     "localhost",
		MaxMessageSize: DefaultMaxMessageSize,
		Limits:         mailparse.Limits{MaxParts: mailparse.DefaultMaxParts},
	}
}

// Domains is every domain served, the default (MailDomain) first.
func (c Config) Domains() []string {
	if c.MailDomain == "" {
		return append([]string(nil), c.OtherDomains...)
	}
	return append([]string{c.MailDomain}, c.OtherDomains...)
}

// Validate reports every problem of the settings flags set at once, each
// by its flag.
func (c Config) Validate() error {
	var p confcheck.Problems
	for _, d := range c.Domains() {
		p.Check(d != "" && !strings.ContainsAny(d, "@ /"), "--mail-domain %q is not a domain", d)
	}
	p.Check(c.MailDomain != "", "--mail-domain needs at least one domain")
	p.Check(c.MaxMessageSize >= 1<<10 && c.MaxMessageSize <= 1<<30, "--max-message-size must be between 1KiB and 1GiB")
	p.Check(c.Limits.MaxParts >= 1 && c.Limits.MaxParts <= 100000, "--max-mime-parts must be between 1 and 100000")
	return p.Err()
}

// Service stores inbound mail.
type Service struct {
	db  store.Store
	cfg Config
	// sources: db reads store.Inbound.Sources (store.SourceStore).
	sources bool

	idem [64]sync.Mutex
}

// New returns a Service storing into st.
func New(st store.Store, cfg Config) *Service {
	if cfg.MailDomain == "" {
		cfg.MailDomain = DefaultConfig().MailDomain
	}
	cfg.MailDomain = strings.ToLower(cfg.MailDomain)
	others := make([]string, 0, len(cfg.OtherDomains))
	for _, d := range cfg.OtherDomains {
		if d = strings.ToLower(d); d != cfg.MailDomain && !slices.Contains(others, d) {
			others = append(others, d)
		}
	}
	cfg.OtherDomains = others
	if cfg.MaxMessageSize <= 0 {
		cfg.MaxMessageSize = DefaultMaxMessageSize
	}
	ss, ok := st.(store.SourceStore)
	return &Service{db: st, cfg: cfg, sources: ok && ss.ReadsAttachmentSources()}
}

// Result identifies what one inbound message stored for one inbox.
type Result struct {
	MessageID string `json:"messageId"`
	EventID   string `json:"eventId"`
	ThreadID  string `json:"threadId"`
}

// Recipient is one inbox a message is delivered to, with the address it
// was sent to (which may carry a +tag).
type Recipient struct {
	Inbox   store.Inbox
	Address string
}

// Address returns the inbox's address: its mailbox name at its domain
// (the default domain when it has none of its own).
func (s *Service) Address(in store.Inbox) string {
	return in.MailboxName + "@" + s.InboxDomain(in)
}

// InboxDomain is the domain of the inbox's address.
func (s *Service) InboxDomain(in store.Inbox) string {
	if in.Domain != "" {
		return in.Domain
	}
	return s.cfg.MailDomain
}

// MailDomain is the default mail domain.
func (s *Service) MailDomain() string { return s.cfg.MailDomain }

// Domains lists every served domain, the default first (lower case).
func (s *Service) Domains() []string {
	return append([]string{s.cfg.MailDomain}, s.cfg.OtherDomains...)
}

// Serves returns domain in the form the server stores it (lower case)
// and whether the server serves it.
func (s *Service) Serves(domain string) (string, bool) {
	d := strings.ToLower(strings.TrimSuffix(domain, "."))
	return d, d == s.cfg.MailDomain || slices.Contains(s.cfg.OtherDomains, d)
}

// DeliverRaw parses raw once and stores one message and one event per
// recipient, all in one synced batch. It returns once everything is
// durable. raw's bytes, and its spare capacity, belong to DeliverRaw:
// given a RawBuffer, the batch is built there, over them.
func (s *Service) DeliverRaw(rcpts []Recipient, raw []byte) ([]Result, error) {
	if len(raw) > s.cfg.MaxMessageSize {
		return nil, ErrTooLarge
	}
	var buf []byte
	if len(rcpts) == 1 {
		buf, raw = s.place(raw)
	}
	parsed, err := s.parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return s.store(rcpts, raw, buf, parsed, "", nil)
}

// DeliverHTTPRaw is DeliverRaw for one inbox with an optional idempotency
// key: a repeated key returns the first reply (replayed=true). raw
// belongs to it, as to DeliverRaw.
func (s *Service) DeliverHTTPRaw(in store.Inbox, raw []byte, idemKey string) (res []byte, replayed bool, err error) {
	var fp string
	if idemKey != "" {
		fp = fingerprint("rfc822", raw)
	}
	return s.idempotent(in, idemKey, fp, func(h string) ([]byte, error) {
		if len(raw) > s.cfg.MaxMessageSize {
			return nil, ErrTooLarge
		}
		buf, raw := s.place(raw)
		parsed, err := s.parse(raw)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		return s.storeOne(in, raw, buf, parsed, h)
	})
}

// RawBuffer returns a buffer for a raw message of n bytes to be read
// into (len 0). For a store that builds its batch in place
// (store.SourceStore) its spare capacity (store.InboundBufferCap) lets
// the batch be built there, over the raw bytes, instead of copying them
// into a batch beside them (a message large enough to be written as
// tables needs no room); for others it holds n bytes. A caller that
// does not know n exactly gives its best guess; a message that outgrows
// the buffer is stored as any other.
func (s *Service) RawBuffer(n int) []byte {
	if !s.sources {
		return make([]byte, 0, n)
	}
	return make([]byte, 0, store.InboundBufferCap(n))
}

// place moves raw to the end of its buffer when the buffer has the room
// for the store's batch in front of it (RawBuffer) and the store builds
// batches in place: it returns the buffer and raw's new place. Otherwise
// it returns raw as it is, and no buffer. raw must not be used by the
// caller afterwards (DeliverRaw and DeliverHTTPRaw document it).
func (s *Service) place(raw []byte) (buf, moved []byte) {
	if !s.sources || cap(raw) < store.InboundBufferCap(len(raw)) || cap(raw) == len(raw) {
		return nil, raw
	}
	buf = raw[:cap(raw)]
	moved = buf[len(buf)-len(raw):]
	copy(moved, raw)
	return buf, moved
}

// parse parses raw. For a store that reads attachment sources
// (store.SourceStore), large attachments are left encoded in raw and
// decoded straight into the store's write (mailparse.ParseDeferred): a
// decoded copy never exists beside it. The store reads them before it
// writes over raw (store.Inbound.Buffer).
func (s *Service) parse(raw []byte) (*mailparse.Message, error) {
	if s.sources {
		return mailparse.ParseDeferred(raw, s.cfg.Limits)
	}
	return mailparse.Parse(raw, s.cfg.Limits)
}

// JSONInbound is the JSON form of POST /v1/inboxes/{id}/inbound.
type JSONInbound struct {
	From        string           `json:"from"`
	Subject     string           `json:"subject"`
	Text        string           `json:"text"`
	HTML        string           `json:"html"`
	Cc          []string         `json:"cc"`
	MessageID   string           `json:"messageId"`
	InReplyTo   string           `json:"inReplyTo"`
	Attachments []JSONAttachment `json:"attachments"`
}

// JSONAttachment is an attachment of JSONInbound.
type JSONAttachment struct {
	Filename      string `json:"filename"`
	ContentType   string `json:"contentType"`
	ContentBase64 string `json:"contentBase64"`
}

// Validate reports every problem of j at once.
func (j *JSONInbound) Validate() error {
	var probs []string
	if strings.TrimSpace(j.From) == "" {
		probs = append(probs, "from is required")
	} else if _, err := mail.ParseAddress(j.From); err != nil {
		probs = append(probs, fmt.Sprintf("from %q is not an email address", j.From))
	}
	for _, c := range j.Cc {
		if _, err := mail.ParseAddress(c); err != nil {
			probs = append(probs, fmt.Sprintf("cc %q is not an email address", c))
		}
	}
	for i, a := range j.Attachments {
		if strings.TrimSpace(a.Filename) == "" {
			probs = append(probs, fmt.Sprintf("attachments[%d].filename is required", i))
		}
		if _, err := base64.StdEncoding.DecodeString(a.ContentBase64); err != nil {
			probs = append(probs, fmt.Sprintf("attachments[%d].contentBase64 is not valid base64", i))
		}
	}
	if strings.ContainsAny(j.Subject, "\r\n") {
		probs = append(probs, "subject must not contain line breaks")
	}
	if len(probs) > 0 {
		return fmt.Errorf("%w: %s", ErrInvalid, strings.Join(probs, "; "))
	}
	return nil
}

// DeliverJSON builds an RFC 5322 message from j (so the raw endpoint serves
// real mail), parses it like any inbound mail and stores it.
func (s *Service) DeliverJSON(in store.Inbox, j *JSONInbound, idemKey string) (res []byte, replayed bool, err error) {
	if err := j.Validate(); err != nil {
		return nil, false, err
	}
	var fp string
	if idemKey != "" {
		canon, _ := json.Marshal(j) // the same fields in the same order, whatever the request's spacing
		fp = fingerprint("json", canon)
	}
	return s.idempotent(in, idemKey, fp, func(h string) ([]byte, error) {
		c := mailparse.Compose{
			From: j.From, To: s.Address(in), Cc: j.Cc, Subject: j.Subject,
			Text: j.Text, HTML: j.HTML, MessageID: j.MessageID, InReplyTo: j.InReplyTo,
			Date: time.Now(),
		}
		for _, a := range j.Attachments {
			data, _ := base64.StdEncoding.DecodeString(a.ContentBase64) // validated above
			ct := a.ContentType
			if ct == "" {
				ct = "application/octet-stream"
			}
			c.Attachments = append(c.Attachments, mailparse.Attachment{Filename: a.Filename, ContentType: ct, Data: data})
		}
		if c.MessageID == "" {
			c.MessageID = mailparse.NewMessageID(s.cfg.MailDomain)
		}
		// BuildMessage returns the parsed view with the bytes: no re-parse.
		raw, parsed, err := mailparse.BuildMessage(c)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
		if len(raw) > s.cfg.MaxMessageSize {
			return nil, ErrTooLarge
		}
		return s.storeOne(in, raw, nil, parsed, h)
	})
}

// idempotent runs do once per (inbox, key): a stored reply is returned
// as is when the request's fingerprint (fp) is the first request's, and
// ErrIdempotencyMismatch when it is not. do receives the key's hash (""
// without a key) to store the reply in the same batch as the message.
func (s *Service) idempotent(in store.Inbox, key, fp string, do func(hash string) ([]byte, error)) ([]byte, bool, error) {
	if key == "" {
		r, err := do("")
		return r, false, err
	}
	h := store.IdempotencyHash(key)
	mu := &s.idem[fnv32(in.ID+h)%uint32(len(s.idem))]
	mu.Lock()
	defer mu.Unlock()
	if rec, err := s.db.Idempotent(in.ID, h); err == nil {
		r, stored := splitIdemRecord(rec)
		if stored != "" && stored != fp {
			return nil, false, ErrIdempotencyMismatch
		}
		return r, true, nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, false, err
	}
	r, err := do(h + idemSep + fp)
	return r, false, err
}

// The stored record of an idempotency key is the JSON reply, a NUL (which
// JSON never holds) and the first request's fingerprint. Records stored
// before fingerprints existed are the reply alone: they replay to any
// body.
const idemSep = "\x00"

// splitIdemRecord returns a stored record's reply and fingerprint ("" for
// a record without one).
func splitIdemRecord(rec []byte) (reply []byte, fp string) {
	if i := bytes.LastIndexByte(rec, 0); i >= 0 {
		return rec[:i], string(rec[i+1:])
	}
	return rec, ""
}

// fingerprint identifies a request body of a kind (raw or JSON). The body
// is hashed where it is (no copy of a 20 MiB message).
func fingerprint(kind string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(kind + ":"))
	h.Write(body)
	return hex.EncodeToString(h.Sum(nil))
}

func (s *Service) storeOne(in store.Inbox, raw, buf []byte, parsed *mailparse.Message, idemHash string) ([]byte, error) {
	var reply []byte
	_, err := s.store([]Recipient{{Inbox: in, Address: s.Address(in)}}, raw, buf, parsed, idemHash, &reply)
	return reply, err
}

// store writes one message and event per recipient in one synced batch.
// When reply is non-nil, the JSON reply of the (single) recipient is put
// there and, with idemHash (the key's hash and the request's fingerprint
// joined by idemSep, as idempotent makes it), stored for replays.
//
// buf, when set, is raw's buffer (raw at its end) for the store to build
// its batch in (store.Inbound.Buffer; one recipient only).
func (s *Service) store(rcpts []Recipient, raw, buf []byte, p *mailparse.Message, idemHash string, reply *[]byte) ([]Result, error) {
	now := time.Now().UTC()
	rfcID := p.MessageID
	if rfcID == "" {
		rfcID = mailparse.NewMessageID(s.cfg.MailDomain)
	}
	refs := threadRefs(p)
	items := make([]store.Inbound, 0, len(rcpts))
	results := make([]Result, 0, len(rcpts))
	threads := make([]string, len(rcpts))
	accounts := make([]string, len(rcpts))
	for i, r := range rcpts {
		thread, err := s.db.ThreadOf(r.Inbox.ID, refs)
		if err != nil {
			return nil, fmt.Errorf("cannot resolve thread: %w", err)
		}
		threads[i], accounts[i] = thread, r.Inbox.AccountID
	}
	// Event ids are made last, right before the commit: the log releases
	// an account's events in id order, so a commit that waits on anything
	// after its ids are made holds up the account's later events.
	err := s.db.Append(accounts, func(evtIDs []string) ([]store.Inbound, error) {
		for i, r := range rcpts {
			thread, newThread := threads[i], threads[i] == ""
			if newThread {
				thread = ids.NewAt(ids.Thread, now)
			}
			msg := store.Message{
				ID: ids.NewAt(ids.Message, now), InboxID: r.Inbox.ID, AccountID: r.Inbox.AccountID,
				ThreadID: thread, RFCMessageID: rfcID, From: p.From, To: r.Address,
				Cc: nonNil(p.Cc), Subject: p.Subject, BodyText: p.Text, BodyHTML: p.HTML,
				ReceivedAt: now, RawSize: len(raw), AttachmentsTruncated: p.PartsTruncated,
			}
			var atts [][]byte
			var srcs []store.AttachmentSource
			for j := range p.Attachments {
				a := &p.Attachments[j]
				msg.Attachments = append(msg.Attachments, store.AttachmentMeta{Filename: a.Filename, ContentType: a.ContentType, SizeBytes: a.Len()})
				if a.Deferred() {
					if srcs == nil {
						srcs = make([]store.AttachmentSource, len(p.Attachments))
					}
					srcs[j] = a
					atts = append(atts, nil)
					continue
				}
				atts = append(atts, a.Data)
			}
			if msg.Attachments == nil {
				msg.Attachments = []store.AttachmentMeta{}
			}
			ev := store.Event{ID: evtIDs[i], AccountID: r.Inbox.AccountID, InboxID: r.Inbox.ID, Type: EventMessageReceived, MessageID: msg.ID}
			ev.Head, ev.Tail = s.db.RenderEvent(ev.ID, &msg)
			res := Result{MessageID: msg.ID, EventID: ev.ID, ThreadID: thread}
			item := store.Inbound{
				Message: msg, Raw: raw, Buffer: buf, Attachments: atts, Sources: srcs, ThreadRefs: []string{rfcID}, NewThread: newThread,
				Event: ev, // Append sets its delivery state
			}
			if reply != nil {
				*reply = mustJSON(res)
				if hash, fp, ok := strings.Cut(idemHash, idemSep); ok && hash != "" {
					item.IdempotencyKey = hash
					item.Reply = append(append(append([]byte(nil), *reply...), 0), fp...)
				}
			}
			items = append(items, item)
			results = append(results, res)
		}
		return items, nil
	})
	if err != nil {
		return nil, err
	}
	return results, nil
}

// threadRefs lists the ids a message refers to, most specific first:
// In-Reply-To, then References from the newest to the oldest.
func threadRefs(p *mailparse.Message) []string {
	refs := make([]string, 0, len(p.InReplyTo)+len(p.References))
	refs = append(refs, p.InReplyTo...)
	for i := len(p.References) - 1; i >= 0; i-- {
		refs = append(refs, p.References[i])
	}
	return refs
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// mustJSON encodes v without HTML escaping (payloads carry mail text such
// as "Name <addr>", which should read as written).
func mustJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("BUG: cannot encode %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}

func fnv32(s string) uint32 {
	var h uint32 = 2166136261
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
