package jsstore

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// Keys of the directory bucket (bucketDir). Ids are [a-z0-9_] only;
// mailbox names and key hashes are hex-encoded (a key must be a valid
// NATS subject token sequence).
const (
	kAccount = "acct."  // acct.<accID> -> Account
	kKey     = "key."   // key.<keyID> -> APIKey
	kHash    = "hash."  // hash.<hex sha256 of the key> -> keyID
	kInbox   = "inbox." // inbox.<inboxID> -> Inbox
	kMailbox = "mbox."  // mbox.<hex mailbox> -> inboxID
	kHook    = "hook."  // hook.<accID> -> Webhook
)

// keyUseResolution is how stale a key's LastUsedAt may be (as on one
// node): it is written back at most once per this period per node.
const keyUseResolution = time.Minute

// directory is the node's copy of the directory bucket, kept current by
// a watch: reads never leave the node. A write returns once the watch has
// applied it here (read-your-writes on this node); other nodes see it
// within the watch's latency (milliseconds; see docs/CLUSTER.md for what
// a NATS failure does to it).
type directory struct {
	s  *Store
	kv jetstream.KeyValue

	mu        sync.RWMutex
	rev       uint64 // the last revision applied
	ready     bool   // the initial values are in
	accounts  map[string]store.Account
	keys      map[string]keyRec // by key id
	hashes    map[string]string // hex hash -> key id
	inboxes   map[string]store.Inbox
	byAccount map[string]map[string]struct{} // account -> its inbox ids
	mailboxes map[string]string              // mailbox -> inbox id
	hooks     map[string]store.Webhook
	cond      *sync.Cond // rev moved, or ready

	gen      atomic.Uint64 // settings generation (inboxes, webhooks)
	onChange atomic.Pointer[[]func(store.DirectoryChange)]
	chMu     sync.Mutex

	watchMu  sync.Mutex
	watchCtx context.CancelFunc
	watchWG  sync.WaitGroup

	touching sync.Map // key id -> struct{}: a LastUsedAt write in flight

	// catchUp's single flight: a miss waits for one round trip at most
	// and shares it with the misses around it.
	cuMu sync.Mutex
	cuAt time.Time
}

// catchUp waits (bounded) until this node's copy holds every directory
// write made anywhere before it was called. A lookup that misses calls
// it once, so that an account, key or inbox created through another node
// a moment ago is found here (read-your-writes across nodes behind a load
// balancer).
func (d *directory) catchUp() {
	start := time.Now()
	d.cuMu.Lock()
	defer d.cuMu.Unlock()
	if d.cuAt.After(start) {
		return // a catch-up that began after this miss has just ended
	}
	ctx, cancel := d.s.opCtx()
	defer cancel()
	st, err := d.kv.Status(ctx)
	if err != nil {
		return
	}
	if b, ok := st.(*jetstream.KeyValueBucketStatus); ok {
		d.await(b.StreamInfo().State.LastSeq)
	}
	d.cuAt = time.Now()
}

type keyRec struct {
	k   store.APIKey
	rev uint64
}

func newDirectory(s *Store, kv jetstream.KeyValue) *directory {
	d := &directory{s: s, kv: kv, accounts: map[string]store.Account{}, keys: map[string]keyRec{},
		hashes: map[string]string{}, inboxes: map[string]store.Inbox{}, byAccount: map[string]map[string]struct{}{},
		mailboxes: map[string]string{}, hooks: map[string]store.Webhook{}}
	d.cond = sync.NewCond(&d.mu)
	return d
}

// start begins the watch and waits for the initial values.
func (d *directory) start() error {
	if err := d.watch(0); err != nil {
		return err
	}
	deadline := time.Now().Add(d.s.opts.ConnectTimeout)
	d.mu.Lock()
	defer d.mu.Unlock()
	for !d.ready {
		if time.Now().After(deadline) {
			return errors.New("cannot load the directory from NATS: timed out")
		}
		d.waitLocked(time.Until(deadline))
	}
	return nil
}

// waitLocked waits on cond for at most t (d.mu held).
func (d *directory) waitLocked(t time.Duration) {
	tm := time.AfterFunc(t, func() { d.mu.Lock(); d.cond.Broadcast(); d.mu.Unlock() })
	d.cond.Wait()
	tm.Stop()
}

// watch starts a watcher from revision from+1 (0: every current value).
func (d *directory) watch(from uint64) error {
	d.watchMu.Lock()
	defer d.watchMu.Unlock()
	if d.watchCtx != nil {
		d.watchCtx()
		d.watchWG.Wait()
	}
	ctx, cancel := context.WithCancel(d.s.ctx)
	var opts []jetstream.WatchOpt
	if from > 0 {
		opts = append(opts, jetstream.ResumeFromRevision(from+1))
	}
	w, err := d.kv.WatchAll(ctx, opts...)
	if err != nil {
		cancel()
		return fmt.Errorf("cannot watch the directory: %w", err)
	}
	d.watchCtx = cancel
	d.watchWG.Add(1)
	go func() {
		defer d.watchWG.Done()
		defer func() { _ = w.Stop() }()
		for {
			select {
			case <-ctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					d.mu.Lock()
					d.ready = true
					d.cond.Broadcast()
					d.mu.Unlock()
					continue
				}
				d.apply(e)
			}
		}
	}()
	return nil
}

// restart re-creates the watch after a reconnect, from the last revision
// applied (a watch left to recover by itself can stay silent for seconds).
func (d *directory) restart() {
	d.mu.RLock()
	from := d.rev
	d.mu.RUnlock()
	go func() {
		if err := d.watch(from); err != nil && d.s.ctx.Err() == nil {
			d.s.log.Warn("cannot restart the directory watch", "error", err)
		}
	}()
}

func (d *directory) stop() {
	d.watchMu.Lock()
	if d.watchCtx != nil {
		d.watchCtx()
	}
	d.watchMu.Unlock()
	d.watchWG.Wait()
	d.mu.Lock()
	d.cond.Broadcast()
	d.mu.Unlock()
}

// apply folds one watched entry into the copy and tells the watchers of
// changes live connections must follow.
func (d *directory) apply(e jetstream.KeyValueEntry) {
	key, val := e.Key(), e.Value()
	del := e.Operation() != jetstream.KeyValuePut
	var change store.DirectoryChange
	settings := false
	d.mu.Lock()
	if e.Revision() <= d.rev && d.ready {
		d.mu.Unlock()
		return // seen already (a restarted watch overlaps)
	}
	switch {
	case strings.HasPrefix(key, kAccount):
		id := key[len(kAccount):]
		if del {
			delete(d.accounts, id)
		} else if a, err := decode[store.Account](val); err == nil {
			d.accounts[id] = a
		}
	case strings.HasPrefix(key, kKey):
		id := key[len(kKey):]
		if del {
			if _, ok := d.keys[id]; ok {
				change.RevokedKey = id
			}
			delete(d.keys, id)
		} else if k, err := decode[store.APIKey](val); err == nil {
			d.keys[id] = keyRec{k: k, rev: e.Revision()}
		}
	case strings.HasPrefix(key, kHash):
		h := key[len(kHash):]
		if del {
			delete(d.hashes, h)
		} else {
			d.hashes[h] = string(val)
		}
	case strings.HasPrefix(key, kInbox):
		id := key[len(kInbox):]
		settings = true
		if del {
			if in, ok := d.inboxes[id]; ok {
				change.DeletedInbox, change.DeletedInboxAccount = id, in.AccountID
				delete(d.byAccount[in.AccountID], id)
			}
			delete(d.inboxes, id)
		} else if in, err := decode[store.Inbox](val); err == nil {
			d.inboxes[id] = in
			if d.byAccount[in.AccountID] == nil {
				d.byAccount[in.AccountID] = map[string]struct{}{}
			}
			d.byAccount[in.AccountID][id] = struct{}{}
		}
	case strings.HasPrefix(key, kMailbox):
		mb, err := hex.DecodeString(key[len(kMailbox):])
		if err == nil {
			if del {
				delete(d.mailboxes, string(mb))
			} else {
				d.mailboxes[string(mb)] = string(val)
			}
		}
	case strings.HasPrefix(key, kHook):
		id := key[len(kHook):]
		settings = true
		if del {
			delete(d.hooks, id)
		} else if w, err := decode[store.Webhook](val); err == nil {
			d.hooks[id] = w
		}
	}
	d.rev = e.Revision()
	if settings {
		d.gen.Add(1)
	}
	d.cond.Broadcast()
	d.mu.Unlock()
	if change != (store.DirectoryChange{}) {
		if fns := d.onChange.Load(); fns != nil {
			for _, fn := range *fns {
				fn(change)
			}
		}
	}
}

// await returns once the watch has applied revision rev (a write of this
// node), or after a bound: the write is durable either way.
func (d *directory) await(rev uint64) {
	deadline := time.Now().Add(catchUpWait)
	d.mu.Lock()
	defer d.mu.Unlock()
	for d.rev < rev && d.s.ctx.Err() == nil {
		if time.Now().After(deadline) {
			d.s.log.Warn("the directory watch lags behind this node's write", "revision", rev, "applied", d.rev)
			return
		}
		d.waitLocked(time.Until(deadline))
	}
}

func decode[T any](b []byte) (T, error) {
	var v T
	err := json.Unmarshal(b, &v)
	return v, err
}

func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("BUG: cannot encode %T: %v", v, err))
	}
	return b
}

// put writes one key and waits for the watch to apply it.
func (d *directory) put(key string, v []byte) (uint64, error) {
	ctx, cancel := d.s.opCtx()
	defer cancel()
	rev, err := d.kv.Put(ctx, key, v)
	if err != nil {
		return 0, d.s.unavailable("write the directory", err)
	}
	d.await(rev)
	return rev, nil
}

func (d *directory) del(key string) error {
	ctx, cancel := d.s.opCtx()
	defer cancel()
	if err := d.kv.Delete(ctx, key); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return d.s.unavailable("write the directory", err)
	}
	return nil
}

// CreateAccount implements store.Directory.
func (s *Store) CreateAccount(name string) (store.Account, store.APIKey, string, error) {
	if err := s.writable(); err != nil {
		return store.Account{}, store.APIKey{}, "", err
	}
	now := time.Now().UTC()
	acc := store.Account{ID: ids.New(ids.Account), Name: name, CreatedAt: now}
	// The account first: a key never names a missing account.
	if _, err := s.dir.put(kAccount+acc.ID, encode(acc)); err != nil {
		return store.Account{}, store.APIKey{}, "", fmt.Errorf("cannot create account: %w", err)
	}
	k, plain, err := s.newKey(acc.ID, now)
	if err != nil {
		return store.Account{}, store.APIKey{}, "", fmt.Errorf("cannot create account: %w", err)
	}
	return acc, k, plain, nil
}

func hashHex(plain string) string {
	h := sha256.Sum256([]byte(plain))
	return hex.EncodeToString(h[:])
}

func (s *Store) newKey(accountID string, now time.Time) (store.APIKey, string, error) {
	plain := ids.NewAPIKey()
	h := sha256.Sum256([]byte(plain))
	k := store.APIKey{ID: ids.New(ids.APIKey), AccountID: accountID, Hash: h[:], Last4: plain[len(plain)-4:], CreatedAt: now}
	// The record before its hash: a hash always resolves.
	if _, err := s.dir.put(kKey+k.ID, encode(k)); err != nil {
		return store.APIKey{}, "", err
	}
	if _, err := s.dir.put(kHash+hex.EncodeToString(h[:]), []byte(k.ID)); err != nil {
		return store.APIKey{}, "", err
	}
	return k, plain, nil
}

// GetAccount implements store.Directory.
func (s *Store) GetAccount(id string) (store.Account, error) {
	get := func() (store.Account, bool) {
		s.dir.mu.RLock()
		defer s.dir.mu.RUnlock()
		a, ok := s.dir.accounts[id]
		return a, ok
	}
	a, ok := get()
	if !ok && recent(ids.Account, id) {
		s.dir.catchUp()
		a, ok = get()
	}
	if !ok {
		return store.Account{}, store.ErrNotFound
	}
	return a, nil
}

// ListAccounts implements store.Directory (creation order).
func (s *Store) ListAccounts(p store.Page) ([]store.Account, int, error) {
	s.dir.mu.RLock()
	all := make([]store.Account, 0, len(s.dir.accounts))
	for _, a := range s.dir.accounts {
		all = append(all, a)
	}
	s.dir.mu.RUnlock()
	slices.SortFunc(all, func(a, b store.Account) int { return strings.Compare(a.ID, b.ID) })
	return pageOf(all, p), len(all), nil
}

func pageOf[T any](all []T, p store.Page) []T {
	if p.Offset >= len(all) {
		return []T{}
	}
	end := len(all)
	if p.Limit > 0 && p.Offset+p.Limit < end {
		end = p.Offset + p.Limit
	}
	return all[p.Offset:end]
}

// CountAccounts implements store.Directory.
func (s *Store) CountAccounts() (int, error) {
	s.dir.mu.RLock()
	defer s.dir.mu.RUnlock()
	return len(s.dir.accounts), nil
}

// CreateAPIKey implements store.Directory.
func (s *Store) CreateAPIKey(accountID string) (store.APIKey, string, error) {
	if _, err := s.GetAccount(accountID); err != nil {
		return store.APIKey{}, "", err
	}
	if err := s.writable(); err != nil {
		return store.APIKey{}, "", err
	}
	k, plain, err := s.newKey(accountID, time.Now().UTC())
	if err != nil {
		return store.APIKey{}, "", fmt.Errorf("cannot create api key: %w", err)
	}
	return k, plain, nil
}

// ListAPIKeys implements store.Directory (creation order).
func (s *Store) ListAPIKeys(accountID string) ([]store.APIKey, error) {
	if _, err := s.GetAccount(accountID); err != nil {
		return nil, err
	}
	s.dir.mu.RLock()
	var out []store.APIKey
	for _, r := range s.dir.keys {
		if r.k.AccountID == accountID {
			out = append(out, r.k)
		}
	}
	s.dir.mu.RUnlock()
	slices.SortFunc(out, func(a, b store.APIKey) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// RevokeAPIKey implements store.Directory: the hash goes first, so the key
// stops authenticating on every node as soon as the watch brings it.
func (s *Store) RevokeAPIKey(keyID string) (store.APIKey, error) {
	s.dir.mu.RLock()
	r, ok := s.dir.keys[keyID]
	s.dir.mu.RUnlock()
	if !ok {
		return store.APIKey{}, store.ErrNotFound
	}
	if err := s.writable(); err != nil {
		return store.APIKey{}, err
	}
	if err := s.dir.del(kHash + hex.EncodeToString(r.k.Hash)); err != nil {
		return store.APIKey{}, fmt.Errorf("cannot revoke api key: %w", err)
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	if err := s.dirKV.Delete(ctx, kKey+keyID); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return store.APIKey{}, fmt.Errorf("cannot revoke api key: %w", s.unavailable("write the directory", err))
	}
	// Wait for the deletion to reach this node's copy.
	if e, err := s.dirKV.Get(ctx, kKey+keyID); err == nil {
		s.dir.await(e.Revision())
	} else {
		s.dir.awaitGone(keyID)
	}
	return r.k, nil
}

// awaitGone waits (bounded) until the key id left this node's copy.
func (d *directory) awaitGone(keyID string) {
	deadline := time.Now().Add(catchUpWait)
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if _, ok := d.keys[keyID]; !ok || time.Now().After(deadline) || d.s.ctx.Err() != nil {
			return
		}
		d.waitLocked(time.Until(deadline))
	}
}

// Authenticate implements store.Directory: a lookup in this node's copy,
// the hash compared in constant time.
func (s *Store) Authenticate(plain string) (store.APIKey, error) {
	if !ids.ValidAPIKey(plain) {
		return store.APIKey{}, store.ErrNotFound
	}
	h := sha256.Sum256([]byte(plain))
	lookup := func() (keyRec, bool) {
		s.dir.mu.RLock()
		defer s.dir.mu.RUnlock()
		id, ok := s.dir.hashes[hex.EncodeToString(h[:])]
		r, ok2 := s.dir.keys[id]
		return r, ok && ok2
	}
	r, ok := lookup()
	if !ok {
		s.dir.catchUp() // created through another node a moment ago?
		r, ok = lookup()
	}
	if !ok || subtle.ConstantTimeCompare(r.k.Hash, h[:]) != 1 {
		return store.APIKey{}, store.ErrNotFound
	}
	if now := time.Now().UTC(); now.Sub(r.k.LastUsedAt) >= keyUseResolution {
		s.touchKey(r, now)
	}
	return r.k, nil
}

// touchKey records a key's LastUsedAt in the background, by
// compare-and-set so that a revocation is never undone.
func (s *Store) touchKey(r keyRec, now time.Time) {
	if _, busy := s.dir.touching.LoadOrStore(r.k.ID, struct{}{}); busy {
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer s.dir.touching.Delete(r.k.ID)
		k := r.k
		k.LastUsedAt = now
		ctx, cancel := s.opCtx()
		defer cancel()
		if rev, err := s.dirKV.Update(ctx, kKey+k.ID, encode(k), r.rev); err == nil {
			s.dir.await(rev)
		}
	}()
}

// KeyExists implements store.Directory.
func (s *Store) KeyExists(keyID string) (bool, error) {
	s.dir.mu.RLock()
	defer s.dir.mu.RUnlock()
	_, ok := s.dir.keys[keyID]
	return ok, nil
}

// CreateInbox implements store.Directory: the mailbox name is claimed
// with a create (unique over the cluster), then the inbox is written.
func (s *Store) CreateInbox(in store.Inbox) (store.Inbox, error) {
	if in.ID == "" {
		in.ID = ids.New(ids.Inbox)
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = time.Now().UTC()
	}
	if _, err := s.GetAccount(in.AccountID); err != nil {
		return store.Inbox{}, fmt.Errorf("cannot create inbox: account %s: %w", in.AccountID, err)
	}
	if err := s.writable(); err != nil {
		return store.Inbox{}, err
	}
	ctx, cancel := s.opCtx()
	defer cancel()
	mk := kMailbox + hex.EncodeToString([]byte(in.MailboxName))
	if _, err := s.dirKV.Create(ctx, mk, []byte(in.ID)); err != nil {
		if errors.Is(err, jetstream.ErrKeyExists) {
			return store.Inbox{}, store.ErrConflict
		}
		return store.Inbox{}, fmt.Errorf("cannot create inbox: %w", s.unavailable("write the directory", err))
	}
	if _, err := s.dir.put(kInbox+in.ID, encode(in)); err != nil {
		_ = s.dir.del(mk) // give the name back
		return store.Inbox{}, fmt.Errorf("cannot create inbox: %w", err)
	}
	return in, nil
}

// GetInbox implements store.Directory.
func (s *Store) GetInbox(accountID, id string) (store.Inbox, error) {
	get := func() (store.Inbox, bool) {
		s.dir.mu.RLock()
		defer s.dir.mu.RUnlock()
		in, ok := s.dir.inboxes[id]
		return in, ok
	}
	in, ok := get()
	if !ok && recent(ids.Inbox, id) {
		s.dir.catchUp()
		in, ok = get()
	}
	if !ok || in.AccountID != accountID {
		return store.Inbox{}, store.ErrNotFound
	}
	return in, nil
}

// InboxByMailbox implements store.Directory.
func (s *Store) InboxByMailbox(mailbox string) (store.Inbox, error) {
	get := func() (store.Inbox, bool) {
		s.dir.mu.RLock()
		defer s.dir.mu.RUnlock()
		in, ok := s.dir.inboxes[s.dir.mailboxes[mailbox]]
		return in, ok
	}
	in, ok := get()
	if !ok {
		s.dir.catchUp() // mail for an inbox created through another node a moment ago
		in, ok = get()
	}
	if !ok {
		return store.Inbox{}, store.ErrNotFound
	}
	return in, nil
}

// InboxOwned implements store.Directory.
func (s *Store) InboxOwned(accountID, id string) (bool, error) {
	s.dir.mu.RLock()
	defer s.dir.mu.RUnlock()
	in, ok := s.dir.inboxes[id]
	return ok && in.AccountID == accountID, nil
}

// ListInboxes implements store.Directory (creation order).
func (s *Store) ListInboxes(accountID string, p store.Page) ([]store.Inbox, int, error) {
	s.dir.mu.RLock()
	var all []store.Inbox
	for id := range s.dir.byAccount[accountID] {
		all = append(all, s.dir.inboxes[id])
	}
	s.dir.mu.RUnlock()
	slices.SortFunc(all, func(a, b store.Inbox) int { return strings.Compare(a.ID, b.ID) })
	return pageOf(all, p), len(all), nil
}

// UpdateInbox implements store.Directory, by compare-and-set.
func (s *Store) UpdateInbox(accountID, id string, fn func(*store.Inbox) error) (store.Inbox, error) {
	if err := s.writable(); err != nil {
		return store.Inbox{}, err
	}
	for range 20 {
		ctx, cancel := s.opCtx()
		e, err := s.dirKV.Get(ctx, kInbox+id)
		cancel()
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return store.Inbox{}, store.ErrNotFound
		}
		if err != nil {
			return store.Inbox{}, s.unavailable("read the directory", err)
		}
		in, err := decode[store.Inbox](e.Value())
		if err != nil {
			return store.Inbox{}, fmt.Errorf("cannot decode inbox %s: %w", id, err)
		}
		if in.AccountID != accountID {
			return store.Inbox{}, store.ErrNotFound
		}
		if err := fn(&in); err != nil {
			return store.Inbox{}, err
		}
		ctx, cancel = s.opCtx()
		rev, err := s.dirKV.Update(ctx, kInbox+id, encode(in), e.Revision())
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // changed meanwhile: read again
		}
		if err != nil {
			return store.Inbox{}, fmt.Errorf("cannot update inbox: %w", s.unavailable("write the directory", err))
		}
		s.dir.await(rev)
		return in, nil
	}
	return store.Inbox{}, fmt.Errorf("cannot update inbox %s: too many concurrent changes", id)
}

// GetWebhook implements store.Directory.
func (s *Store) GetWebhook(accountID string) (store.Webhook, error) {
	s.dir.mu.RLock()
	defer s.dir.mu.RUnlock()
	w, ok := s.dir.hooks[accountID]
	if !ok {
		return store.Webhook{}, store.ErrNotFound
	}
	return w, nil
}

// UpdateWebhook implements store.Directory, by compare-and-set.
func (s *Store) UpdateWebhook(accountID string, fn func(w *store.Webhook, exists bool) (remove bool, err error)) (store.Webhook, error) {
	if err := s.writable(); err != nil {
		return store.Webhook{}, err
	}
	key := kHook + accountID
	for range 20 {
		ctx, cancel := s.opCtx()
		e, err := s.dirKV.Get(ctx, key)
		cancel()
		var w store.Webhook
		var rev uint64
		exists := err == nil
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return store.Webhook{}, s.unavailable("read the directory", err)
		default:
			rev = e.Revision()
			if w, err = decode[store.Webhook](e.Value()); err != nil {
				return store.Webhook{}, fmt.Errorf("cannot decode webhook: %w", err)
			}
		}
		remove, err := fn(&w, exists)
		if err != nil {
			return store.Webhook{}, err
		}
		ctx, cancel = s.opCtx()
		var nrev uint64
		switch {
		case remove && !exists:
			cancel()
			return store.Webhook{}, nil
		case remove:
			err = s.dirKV.Delete(ctx, key, jetstream.LastRevision(rev))
		case exists:
			nrev, err = s.dirKV.Update(ctx, key, encode(w), rev)
		default:
			nrev, err = s.dirKV.Create(ctx, key, encode(w))
		}
		cancel()
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue
		}
		if err != nil {
			return store.Webhook{}, fmt.Errorf("cannot update webhook: %w", s.unavailable("write the directory", err))
		}
		if remove {
			s.dir.awaitHookGone(accountID)
			return store.Webhook{}, nil
		}
		s.dir.await(nrev)
		return w, nil
	}
	return store.Webhook{}, errors.New("cannot update webhook: too many concurrent changes")
}

func (d *directory) awaitHookGone(accountID string) {
	deadline := time.Now().Add(catchUpWait)
	d.mu.Lock()
	defer d.mu.Unlock()
	for {
		if _, ok := d.hooks[accountID]; !ok || time.Now().After(deadline) || d.s.ctx.Err() != nil {
			return
		}
		d.waitLocked(time.Until(deadline))
	}
}

// SettingsGen implements store.Directory.
func (s *Store) SettingsGen() uint64 { return s.dir.gen.Load() }

// OnChange implements store.Directory: fn hears of revocations and inbox
// deletions made on any node (this one included).
func (s *Store) OnChange(fn func(store.DirectoryChange)) {
	s.dir.chMu.Lock()
	defer s.dir.chMu.Unlock()
	var fns []func(store.DirectoryChange)
	if old := s.dir.onChange.Load(); old != nil {
		fns = append(fns, *old...)
	}
	fns = append(fns, fn)
	s.dir.onChange.Store(&fns)
}
