package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// Errors returned by the store. Callers map them to API errors.
var (
	// ErrLocked: the data directory is open in another process.
	ErrLocked   = errors.New("the data directory is locked")
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrReadOnly: the store was opened read-only (the disk was too full
	// to open it for writing); reads work, writes are refused.
	ErrReadOnly = errors.New("the store is read-only: the disk is full")
	// ErrFailed: a write failed in a way the disk cannot be trusted after
	// (a WAL write or sync); the process is about to exit (crash-only).
	ErrFailed = errors.New("the store failed a write and the server is restarting")
	// ErrUnavailable: the store cannot make a write durable now (a
	// cluster store whose NATS is unreachable); nothing was acknowledged,
	// the client retries later.
	ErrUnavailable = errors.New("the store is unavailable")
	// ErrUnconfirmed comes with ErrUnavailable when a write was sent but
	// its confirmation never came (a cluster store whose NATS server went
	// away mid-write and whose retries ran out): it may have been stored.
	// A client that retries may see it twice, never zero times.
	ErrUnconfirmed = errors.New("the write may have been stored but was not confirmed")
	// ErrNoSpace: the disk filled up while a large message's tables were
	// written (tables.go); nothing was stored, and the store goes on.
	ErrNoSpace = errors.New("the disk is full")
)

// Options configure Open. The zero value of every field has a documented
// default.
type Options struct {
	// Dir is the database directory. Required.
	Dir string
	// FS is the filesystem; nil means the operating system's (vfs.Default).
	// Tests pass vfs.NewMem(), vfs.NewCrashableMem() or an errorfs wrapper.
	FS vfs.FS
	// CacheBytes is Pebble's block cache size; 0 means 64 MiB.
	CacheBytes int64
	// Logger receives Pebble's log lines; nil means slog.Default().
	Logger *slog.Logger
	// MaxOpenFiles bounds the table files Pebble keeps open (its share of
	// the descriptor budget); 0 means Pebble's default (1000).
	MaxOpenFiles int
	// MaxEventBytes caps an event's frame (and webhook body) by cutting
	// its bodies (RenderMessageEvent); 0 means DefaultMaxEventBytes.
	MaxEventBytes int
	// PublicURL (--public-url), when set, is put before the attachment
	// URLs of events ("https://mail.example.com", no trailing slash).
	PublicURL string
	// ReadOnly opens the database without writing (no WAL, no flush):
	// for a start on a disk too full to open it for writing. Writes
	// return ErrReadOnly.
	ReadOnly bool
	// OnFatal is called when Pebble reports an unrecoverable error (a WAL
	// write or sync failed: the disk can no longer be trusted to hold what
	// we acknowledge). From then on every write returns ErrFailed, so the
	// requests in flight are answered (451/503) rather than dropped. nil
	// means: log it and exit the process with status 74 FatalExitGrace
	// later, so a supervisor restarts it and Pebble recovers from its WAL
	// (crash-only). Tests that inject I/O errors pass their own func.
	OnFatal func(msg string)
}

// DB is the mailwire database. Open it with Open, close it with Close.
type DB struct {
	pdb *pebble.DB
	log *slog.Logger

	// ctl serialises control-plane writes that check before they write
	// (unique addresses, account and key creation, inbox deletion).
	ctl sync.Mutex

	// inboxLocks order ingest (read side) against inbox deletion (write
	// side); a stripe is chosen by hashing the inbox id.
	inboxLocks [256]sync.RWMutex
	// deleted holds the inboxes this process deleted (written under the
	// inbox's stripe lock, exclusive): ingest, which looked the inbox up
	// before taking the lock shared, checks it instead of re-reading the
	// inbox from Pebble for every message. A deleted id never comes back.
	deleted sync.Map

	// settingsGen counts committed changes to inboxes and webhooks, so
	// readers may cache settings and refetch when it moved.
	settingsGen atomic.Uint64
	// keysGen counts key revocations (the key cache's generation).
	keysGen atomic.Uint64

	keys      *genCache[APIKey] // by hex SHA-256 of the key
	inboxes   *genCache[Inbox]  // by inbox id
	addresses *genCache[string] // inbox id by mailbox name (SMTP's RCPT TO)

	group *groupCommitter // ingest's synced commits
	// fs and dir are Pebble's; tableOpts write the tables of large
	// messages (tables.go).
	fs        vfs.FS
	dir       string
	tableOpts sstable.WriterOptions
	// ingestSlots bounds concurrent ingestions (ingestLarge).
	ingestSlots chan struct{}
	// tables is held shared by a large message's ingestion until its
	// commit, and exclusively by Close, which sets closed.
	tables struct {
		sync.RWMutex
		closed bool
	}
	dl *deliveries // the delivery side of the event log

	maxEventBytes int
	publicURL     string

	readOnly bool
	// failed is set when Pebble reported a fatal error: no write reaches
	// it again.
	failed atomic.Bool

	// stateMu orders delivery-state batches (read-modify-write, shared)
	// against the deletion of events (inbox deletion and retention,
	// exclusive): without it a state read before a deletion could be
	// written back after it, resurrecting a pending event.
	stateMu sync.RWMutex
}

// FatalExitGrace is how long the process lives after a fatal storage
// error (the default OnFatal): long enough to answer the requests in
// flight, too short to serve on.
const FatalExitGrace = 2 * time.Second

// writable reports why the store takes no writes (nil when it does).
func (d *DB) writable() error {
	switch {
	case d.failed.Load():
		return ErrFailed
	case d.readOnly:
		return ErrReadOnly
	}
	return nil
}

// ReadOnly reports whether the store was opened read-only.
func (d *DB) ReadOnly() bool { return d.readOnly }

// Health implements Store: why the store cannot take writes ("" when it
// can; a read-only store reports through ReadOnly and the disk budget).
func (d *DB) Health() string {
	if d.failed.Load() {
		return ErrFailed.Error()
	}
	return ""
}

// SettingsGen is a counter that increases after every committed change to
// an inbox or a webhook setting. A cache entry fetched when it read g is
// still valid while SettingsGen() == g.
func (d *DB) SettingsGen() uint64 { return d.settingsGen.Load() }

// pebbleOptions are the options d opens Pebble with; the caller unrefs
// their Cache once Pebble is open. Pebble's logger reports to d's and its
// fatal errors to opts.OnFatal (or exit 74).
func (d *DB) pebbleOptions(opts Options) *pebble.Options {
	cacheBytes := opts.CacheBytes
	if cacheBytes <= 0 {
		cacheBytes = 64 << 20
	}
	cache := pebble.NewCache(cacheBytes)
	// Bloom filters let point reads of absent keys (idempotency keys,
	// threads, due entries) skip the tables.
	var levels [7]pebble.LevelOptions
	for i := range levels {
		levels[i].FilterPolicy = bloom.FilterPolicy(10)
	}
	po := &pebble.Options{
		Levels:   levels,
		FS:       opts.FS,
		Cache:    cache,
		ReadOnly: opts.ReadOnly,
		// Inbound messages below 4 MiB go through the WAL (larger ones
		// are ingested as tables); a bigger memtable keeps flushes from
		// stalling ingest.
		MemTableSize:                64 << 20,
		MemTableStopWritesThreshold: 4,
		FormatMajorVersion:          pebble.FormatNewest,
		MaxOpenFiles:                opts.MaxOpenFiles,
	}
	po.Logger = pebbleLogger{log: d.log.With("component", "pebble"), onFatal: func(msg string) {
		d.failed.Store(true)
		if opts.OnFatal != nil {
			opts.OnFatal(msg)
			return
		}
		time.AfterFunc(FatalExitGrace, func() { os.Exit(74) }) // EX_IOERR
	}}
	// For the table writer's options (tables.go). After Logger is set:
	// EnsureDefaults binds the logger into Pebble's event listener (its
	// background-error and corruption handlers), and Open keeps those.
	po.EnsureDefaults()
	return po
}

// Open opens (creating if needed) the database in opts.Dir.
func Open(opts Options) (*DB, error) {
	if opts.Dir == "" {
		return nil, errors.New("cannot open store: no directory given")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	d := &DB{log: log, readOnly: opts.ReadOnly, dir: opts.Dir, ingestSlots: make(chan struct{}, ingestSlots)}
	po := d.pebbleOptions(opts)
	defer po.Cache.Unref()
	d.fs = po.FS
	pdb, err := pebble.Open(opts.Dir, po)
	if errors.Is(err, syscall.EWOULDBLOCK) || errors.Is(err, syscall.EAGAIN) {
		// Pebble's LOCK file is held (flock): another process has it open.
		return nil, fmt.Errorf("%w: %s is in use by another process (another mailwire serve on the same --data-dir?)", ErrLocked, opts.Dir)
	}
	if err != nil {
		return nil, fmt.Errorf("cannot open store in %s: %w", opts.Dir, err)
	}
	maxEvent := opts.MaxEventBytes
	if maxEvent <= 0 {
		maxEvent = DefaultMaxEventBytes
	}
	d.pdb, d.keys, d.inboxes, d.maxEventBytes = pdb, newGenCache[APIKey](keyCacheMax), newGenCache[Inbox](inboxCacheMax), maxEvent
	d.addresses = newGenCache[string](inboxCacheMax)
	d.publicURL = strings.TrimSuffix(opts.PublicURL, "/")
	d.tableOpts = po.MakeWriterOptions(0, pdb.TableFormat())
	if !opts.ReadOnly {
		if err := d.dropUnfinished(); err != nil {
			_ = pdb.Close()
			return nil, err
		}
		if err := d.backfillThreads(); err != nil {
			_ = pdb.Close()
			return nil, err
		}
	}
	d.group = newGroupCommitter(pdb)
	d.dl = newDeliveries(d)
	return d, nil
}

// Close flushes nothing extra (every acknowledged write is already synced)
// and closes the database.
func (d *DB) Close() error {
	d.tables.Lock()
	d.tables.closed = true
	d.tables.Unlock()
	d.dl.end()
	d.group.close()
	if err := d.pdb.Close(); err != nil {
		return fmt.Errorf("cannot close store: %w", err)
	}
	return nil
}

// Pebble exposes the underlying database for metrics.
func (d *DB) Pebble() *pebble.DB { return d.pdb }

func (d *DB) inboxLock(inboxID string) *sync.RWMutex {
	return &d.inboxLocks[d.stripe(inboxID)]
}

// getRaw returns a copy of the value at k, or ErrNotFound.
func (d *DB) getRaw(k []byte) ([]byte, error) {
	v, closer, err := d.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("cannot read %q: %w", k, err)
	}
	out := append([]byte(nil), v...)
	_ = closer.Close()
	return out, nil
}

func (d *DB) has(k []byte) (bool, error) {
	_, closer, err := d.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("cannot read %q: %w", k, err)
	}
	_ = closer.Close()
	return true, nil
}

// getJSON decodes the JSON record at k into v.
func (d *DB) getJSON(k []byte, v any) error {
	raw, closer, err := d.pdb.Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("cannot read %q: %w", k, err)
	}
	defer closer.Close()
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("cannot decode %q: %w", k, err)
	}
	return nil
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("BUG: cannot encode %T: %v", v, err))
	}
	return b
}

func setJSON(b *pebble.Batch, k []byte, v any) {
	_ = b.Set(k, mustJSON(v), nil)
}

// commit applies b with Sync and closes it.
func (d *DB) commit(b *pebble.Batch) error {
	defer b.Close()
	if err := d.writable(); err != nil {
		return err
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("cannot commit batch: %w", err)
	}
	return nil
}

// scan calls fn for every key with prefix p, in key order (or reverse
// order). fn returns false to stop. The key and value are only valid during
// the call.
func (d *DB) scan(p []byte, reverse bool, fn func(k, v []byte) bool) error {
	return d.scanRange(p, prefixEnd(p), reverse, fn)
}

func (d *DB) scanRange(lower, upper []byte, reverse bool, fn func(k, v []byte) bool) error {
	it, err := d.pdb.NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return fmt.Errorf("cannot open iterator: %w", err)
	}
	if reverse {
		for ok := it.Last(); ok; ok = it.Prev() {
			if !fn(it.Key(), it.Value()) {
				break
			}
		}
	} else {
		for ok := it.First(); ok; ok = it.Next() {
			if !fn(it.Key(), it.Value()) {
				break
			}
		}
	}
	if err := it.Error(); err != nil {
		_ = it.Close()
		return fmt.Errorf("cannot iterate: %w", err)
	}
	return it.Close()
}

// Page selects a window of a list.
type Page struct {
	Limit  int
	Offset int
}

// pebbleLogger routes Pebble's log lines to slog. Fatalf is Pebble's way of
// reporting an unrecoverable commit-path error: mailwire is crash-only, so
// by default it logs and exits (the process restarts and resumes from the
// WAL). Serving on would acknowledge writes that may not be durable.
type pebbleLogger struct {
	log     *slog.Logger
	onFatal func(string)
}

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...))
}

func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error("fatal storage error: writes refused, exiting (crash-only)", "error", msg)
	l.onFatal(msg)
	panic("pebble: " + msg) // Fatalf must not return
}
