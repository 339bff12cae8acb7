// Package ids generates the identifiers mailwire hands out: a kind prefix
// ("evt_", "msg_", ...) followed by a ULID, so that ids of one kind sort by
// creation time. It also generates API keys.
//
// Generation is safe for concurrent use: a single monotonic ULID source is
// guarded by a mutex, so ids created in the same millisecond by one process
// still sort in creation order.
package ids

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"
)

// Kind prefixes. Each id is the prefix followed by a 26-character ULID.
const (
	Account = "acc_"
	APIKey  = "key_"
	Inbox   = "inb_"
	Message = "msg_"
	Thread  = "thr_"
	Event   = "evt_"
)

// ulidLen is the length of a ULID in its canonical Crockford base32 form.
const ulidLen = 26

var (
	mu      sync.Mutex
	entropy = ulid.Monotonic(rand.Reader, 0)
)

// New returns prefix + a fresh ULID for the current time.
func New(prefix string) string {
	return NewAt(prefix, time.Now())
}

// NewAt returns prefix + a fresh ULID whose time part is t (millisecond
// precision). Within one millisecond successive ids increase.
func NewAt(prefix string, t time.Time) string {
	mu.Lock()
	id, err := ulid.New(ulid.Timestamp(t), entropy)
	mu.Unlock()
	if err != nil {
		// The monotonic source only fails when 80 bits of entropy overflow
		// within one millisecond, which cannot happen at our rates.
		panic("BUG: cannot generate ULID: " + err.Error())
	}
	return prefix + id.String()
}

// Sequence makes ids of one kind that strictly increase in the order they
// are made, whatever other ids the process makes meanwhile and even if
// the wall clock steps back: it has its own monotonic entropy and never
// lets the time part go backwards. It is not safe for concurrent use (its
// caller orders the calls, e.g. under a lock that also records the ids).
type Sequence struct {
	prefix  string
	entropy *ulid.MonotonicEntropy
	lastMs  uint64
}

// NewSequence returns a Sequence of ids with prefix.
func NewSequence(prefix string) *Sequence {
	return &Sequence{prefix: prefix, entropy: ulid.Monotonic(rand.Reader, 0)}
}

// Next returns the next id: greater than every id this Sequence made.
func (q *Sequence) Next() string {
	ms := max(ulid.Timestamp(time.Now()), q.lastMs)
	id, err := ulid.New(ms, q.entropy)
	if err != nil {
		// The entropy overflowed within one millisecond: take the next one.
		ms++
		id, err = ulid.New(ms, q.entropy)
		if err != nil {
			panic("BUG: cannot generate ULID: " + err.Error())
		}
	}
	q.lastMs = ms
	return q.prefix + id.String()
}

// Valid reports whether s is prefix + a well-formed ULID.
func Valid(prefix, s string) bool {
	if len(s) != len(prefix)+ulidLen || !strings.HasPrefix(s, prefix) {
		return false
	}
	_, err := ulid.ParseStrict(s[len(prefix):])
	return err == nil
}

// Pred returns the id of the given prefix right before id (the ULID less
// one): nothing sorts between them. It is a position, not an id anything
// was given. A malformed id, or the smallest, is returned as is.
func Pred(prefix, id string) string {
	if len(id) != len(prefix)+ulidLen || !strings.HasPrefix(id, prefix) {
		return id
	}
	u, err := ulid.ParseStrict(id[len(prefix):])
	if err != nil {
		return id
	}
	for i := len(u) - 1; i >= 0; i-- {
		u[i]--
		if u[i] != 0xff {
			return prefix + u.String()
		}
	}
	return id // it was the zero ULID
}

// Time returns the creation time encoded in an id of the given prefix, and
// false when the id is malformed.
func Time(prefix, s string) (time.Time, bool) {
	if len(s) != len(prefix)+ulidLen || !strings.HasPrefix(s, prefix) {
		return time.Time{}, false
	}
	u, err := ulid.ParseStrict(s[len(prefix):])
	if err != nil {
		return time.Time{}, false
	}
	return ulid.Time(u.Time()), true
}

// APIKeyPrefix starts every API key.
const APIKeyPrefix = "om_"

// NewAPIKey returns a new API key: "om_" + 48 lowercase hex characters
// (24 random bytes).
func NewAPIKey() string {
	var b [24]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic("BUG: crypto/rand failed: " + err.Error())
	}
	return APIKeyPrefix + hex.EncodeToString(b[:])
}

// ValidAPIKey reports whether s has the shape of an API key.
func ValidAPIKey(s string) bool {
	if len(s) != len(APIKeyPrefix)+48 || !strings.HasPrefix(s, APIKeyPrefix) {
		return false
	}
	for i := len(APIKeyPrefix); i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}
