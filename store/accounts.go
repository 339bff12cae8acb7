package store

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/mailwire/mailwire/internal/ids"
)

// Account is a tenant: it owns API keys, inboxes, messages and events.
type Account struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// APIKey is a stored API key: only the SHA-256 of the key is kept, and
// its last four characters so that a person can tell keys apart.
type APIKey struct {
	ID        string    `json:"id"`
	AccountID string    `json:"accountId"`
	Hash      []byte    `json:"hash"`
	Last4     string    `json:"last4,omitempty"`
	CreatedAt time.Time `json:"createdAt"`
	// LastUsedAt is when the key last authenticated a request, to within
	// keyUseResolution (zero: never, or before it was tracked).
	LastUsedAt time.Time `json:"lastUsedAt,omitempty"`
}

// keyUseResolution is how stale a key's LastUsedAt may be: a key is
// written back at most once per this period, never per request.
const keyUseResolution = time.Minute

func hashKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

// CreateAccount creates an account with one API key and returns both; the
// plaintext key is returned only here.
func (d *DB) CreateAccount(name string) (Account, APIKey, string, error) {
	now := time.Now().UTC()
	acc := Account{ID: ids.New(ids.Account), Name: name, CreatedAt: now}
	key, plain := newKey(acc.ID, now)
	b := d.pdb.NewBatch()
	setJSON(b, key2(pAccount, acc.ID), acc)
	putKey(b, key)
	if err := d.commit(b); err != nil {
		return Account{}, APIKey{}, "", fmt.Errorf("cannot create account: %w", err)
	}
	return acc, key, plain, nil
}

func key2(prefix, id string) []byte { return append([]byte(prefix), id...) }

func newKey(accountID string, now time.Time) (APIKey, string) {
	plain := ids.NewAPIKey()
	return APIKey{ID: ids.New(ids.APIKey), AccountID: accountID, Hash: hashKey(plain), Last4: plain[len(plain)-4:], CreatedAt: now}, plain
}

func putKey(b *pebble.Batch, k APIKey) {
	_ = b.Set(key2(pKey, k.ID), mustJSON(k), nil)
	_ = b.Set(append([]byte(pKeyHash), k.Hash...), []byte(k.ID), nil)
	_ = b.Set(key(pAccountKeys+k.AccountID, k.ID), nil, nil)
}

// GetAccount returns the account with id, or ErrNotFound.
func (d *DB) GetAccount(id string) (Account, error) {
	var a Account
	err := d.getJSON(key2(pAccount, id), &a)
	return a, err
}

// ListAccounts returns a page of accounts in creation order and the total.
func (d *DB) ListAccounts(p Page) ([]Account, int, error) {
	var out []Account
	total := 0
	var decErr error
	err := d.scan([]byte(pAccount), false, func(k, v []byte) bool {
		if total >= p.Offset && len(out) < p.Limit {
			var a Account
			if err := jsonUnmarshal(v, &a); err != nil {
				decErr = err
				return false
			}
			out = append(out, a)
		}
		total++
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list accounts: %w", err)
	}
	return out, total, nil
}

// CreateAPIKey adds a key to an existing account.
func (d *DB) CreateAPIKey(accountID string) (APIKey, string, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if _, err := d.GetAccount(accountID); err != nil {
		return APIKey{}, "", err
	}
	k, plain := newKey(accountID, time.Now().UTC())
	b := d.pdb.NewBatch()
	putKey(b, k)
	if err := d.commit(b); err != nil {
		return APIKey{}, "", fmt.Errorf("cannot create api key: %w", err)
	}
	return k, plain, nil
}

// RevokeAPIKey deletes a key; it stops authenticating at once.
func (d *DB) RevokeAPIKey(keyID string) (APIKey, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	var k APIKey
	if err := d.getJSON(key2(pKey, keyID), &k); err != nil {
		return APIKey{}, err
	}
	b := d.pdb.NewBatch()
	_ = b.Delete(key2(pKey, k.ID), nil)
	_ = b.Delete(append([]byte(pKeyHash), k.Hash...), nil)
	_ = b.Delete(key(pAccountKeys+k.AccountID, k.ID), nil)
	if err := d.commit(b); err != nil {
		return APIKey{}, fmt.Errorf("cannot revoke api key: %w", err)
	}
	d.keysGen.Add(1) // the key stops authenticating at once, cached or not
	return k, nil
}

// KeyExists reports whether the key id is still valid (not revoked).
func (d *DB) KeyExists(keyID string) (bool, error) {
	return d.has(key2(pKey, keyID))
}

// Authenticate returns the key record of a plaintext API key, or
// ErrNotFound. The lookup is by hash; the stored hash is then compared in
// constant time. Valid keys are cached until a key is revoked.
func (d *DB) Authenticate(plain string) (APIKey, error) {
	if !ids.ValidAPIKey(plain) {
		return APIKey{}, ErrNotFound
	}
	h := hashKey(plain)
	gen := d.keysGen.Load()
	ck := string(h)
	k, ok := d.keys.get(gen, ck)
	if !ok {
		keyID, err := d.getRaw(append([]byte(pKeyHash), h...))
		if err != nil {
			return APIKey{}, err
		}
		if err := d.getJSON(key2(pKey, string(keyID)), &k); err != nil {
			return APIKey{}, err
		}
		d.keys.put(gen, ck, k)
	}
	if subtle.ConstantTimeCompare(k.Hash, h) != 1 {
		return APIKey{}, ErrNotFound
	}
	if now := time.Now().UTC(); now.Sub(k.LastUsedAt) >= keyUseResolution {
		k.LastUsedAt = now
		d.noteKeyUse(gen, ck, k)
	}
	return k, nil
}

// noteKeyUse records a key's LastUsedAt (not synced: it is a hint, and a
// crash loses at most keyUseResolution of it) and refreshes the cache.
func (d *DB) noteKeyUse(gen uint64, ck string, k APIKey) {
	b := d.pdb.NewBatch()
	_ = b.Set(key2(pKey, k.ID), mustJSON(k), nil)
	d.ctl.Lock() // a revocation must not be undone by this write
	if ok, err := d.has(key2(pKey, k.ID)); err == nil && ok && d.writable() == nil {
		_ = b.Commit(pebble.NoSync)
	}
	d.ctl.Unlock()
	_ = b.Close()
	d.keys.put(gen, ck, k)
}

// ListAPIKeys returns the account's keys in creation order; ErrNotFound
// when the account does not exist.
func (d *DB) ListAPIKeys(accountID string) ([]APIKey, error) {
	if _, err := d.GetAccount(accountID); err != nil {
		return nil, err
	}
	var out []APIKey
	pfx := prefixKey(pAccountKeys + accountID)
	var keyIDs []string
	if err := d.scan(pfx, false, func(k, _ []byte) bool {
		keyIDs = append(keyIDs, string(k[len(pfx):]))
		return true
	}); err != nil {
		return nil, fmt.Errorf("cannot list api keys: %w", err)
	}
	for _, id := range keyIDs {
		var k APIKey
		if err := d.getJSON(key2(pKey, id), &k); err != nil {
			if err == ErrNotFound {
				continue // revoked meanwhile
			}
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// CountAccounts returns how many accounts exist.
func (d *DB) CountAccounts() (int, error) {
	n := 0
	err := d.scan([]byte(pAccount), false, func(_, _ []byte) bool { n++; return true })
	return n, err
}
