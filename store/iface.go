package store

import "io"

// Store is everything a mailwire node keeps: the directory (accounts, API
// keys, inboxes, webhook settings) and the event log (messages, their
// events, delivery state and the retry schedule). A node opens one
// implementation at start-up and every component uses it through this
// interface: *DB (Pebble, one node, the default) or the NATS JetStream
// store of package store/jsstore (a cluster of nodes).
type Store interface {
	Directory
	EventLog
	// ReadOnly reports whether the store takes no writes (a Pebble store
	// opened on a full disk).
	ReadOnly() bool
	// Health says why the store cannot take writes now ("" when it can):
	// /readyz reports it.
	Health() string
	// WriteMetrics writes the store's own metrics in the Prometheus text
	// format (at scrape time).
	WriteMetrics(w io.Writer)
	// Close releases the store after recording what was handed to it.
	Close() error
}

// Directory holds accounts, API keys, inboxes and webhook settings.
type Directory interface {
	CreateAccount(name string) (Account, APIKey, string, error)
	GetAccount(id string) (Account, error)
	ListAccounts(p Page) ([]Account, int, error)
	CountAccounts() (int, error)

	CreateAPIKey(accountID string) (APIKey, string, error)
	ListAPIKeys(accountID string) ([]APIKey, error)
	RevokeAPIKey(keyID string) (APIKey, error)
	// Authenticate resolves a plaintext key (ErrNotFound when unknown or
	// revoked).
	Authenticate(plain string) (APIKey, error)
	KeyExists(keyID string) (bool, error)

	// CreateInbox fails with ErrConflict when the mailbox name is taken
	// (addresses are global).
	CreateInbox(in Inbox) (Inbox, error)
	// GetInbox answers ErrNotFound for an inbox of another account.
	GetInbox(accountID, id string) (Inbox, error)
	InboxByMailbox(mailbox string) (Inbox, error)
	InboxOwned(accountID, id string) (bool, error)
	ListInboxes(accountID string, p Page) ([]Inbox, int, error)
	UpdateInbox(accountID, id string, fn func(*Inbox) error) (Inbox, error)
	// DeleteInbox removes the inbox with its messages and events.
	DeleteInbox(accountID, id string) ([]string, error)

	GetWebhook(accountID string) (Webhook, error)
	UpdateWebhook(accountID string, fn func(w *Webhook, exists bool) (remove bool, err error)) (Webhook, error)
	// SettingsGen increases after every change to an inbox or a webhook
	// setting (caches of settings compare it).
	SettingsGen() uint64
	// OnChange registers fn to be told of changes that live connections
	// must follow: a revoked key (close its sockets), a deleted inbox.
	// A store shared by several nodes reports the changes made on any of
	// them; the Pebble store reports none (the node made them itself).
	OnChange(fn func(DirectoryChange))
}

// DirectoryChange is a directory change other nodes' connections must
// follow.
type DirectoryChange struct {
	RevokedKey          string // a key id
	DeletedInbox        string // an inbox id ...
	DeletedInboxAccount string // ... of this account
}

// Threads is the thread view of an inbox's messages (threads.go; the
// cluster store's is jsstore/threads.go). It is optional: both stores
// have it, and the API answers 501 on a store without it. ListThreads pages an inbox's
// threads, latest activity first (the caller checked the inbox is the
// account's, as for ListMessages); the others answer ErrNotFound for a
// thread of another account. A thread's messages come oldest first.
// Marking a thread read covers the messages it has now: a later one makes
// it unread again. Deleting an inbox deletes its threads.
type Threads interface {
	ListThreads(inboxID string, f ThreadFilter, p Page) ([]Thread, int, error)
	GetThread(accountID, threadID string) (Thread, error)
	ThreadMessages(accountID, threadID string, p Page) ([]Message, int, error)
	MarkThreadRead(accountID, threadID string, read bool) error
}

// EventLog holds messages and their events: appended in one durable step,
// read by id, scanned per account in order, and delivered (Deliveries).
type EventLog interface {
	Deliveries

	// Append stores new messages and their events in one durable step
	// (see DB.Append for the contract).
	Append(accounts []string, build func(evtIDs []string) ([]Inbound, error)) error
	// RenderEvent renders an event's payload from its message, within the
	// event size cap.
	RenderEvent(evtID string, m *Message) (head, tail []byte)
	Idempotent(inboxID, keyHash string) ([]byte, error)
	ThreadOf(inboxID string, refs []string) (string, error)

	GetMessage(accountID, id string) (Message, error)
	GetRaw(accountID, id string) ([]byte, error)
	GetAttachment(accountID, msgID, filename string) (AttachmentMeta, []byte, error)
	ListMessages(inboxID string, p Page) ([]Message, int, error)

	// GetEvent returns an event by id, any account's (callers check
	// AccountID), with its payload rendered.
	GetEvent(id string) (Event, error)
	GetEventState(accountID, id string) (EventState, error)
	// EventsAfter scans an account's events in order (see DB.EventsAfter).
	EventsAfter(accountID, afterID, beforeID string, limit, scanLimit int, match func(inbox, typ string) bool) ([]StoredEvent, string, error)
	ListEvents(accountID string, f EventFilter, p Page) ([]EventSummary, int, error)
	ListAttempts(evtID string) ([]Attempt, error)

	// OnStored registers fn to be told of new events once they are
	// durable, each account's in id order and only after every earlier
	// event of the account (the order Append releases them; in a cluster,
	// events stored on any node). The events carry their payload. fn runs
	// on the storing path: it must not block or call back into the log.
	OnStored(fn func([]Event))

	// CountDue and ListAllEvents are the operator view's summaries (see
	// stats.go): scans for operators, never for a hot path.
	CountDue(dueMs, overdueMs int64) (DueCounts, error)
	ListAllEvents(accountID string, f EventFilter, p Page) ([]AccountEvent, int, error)

	// Ready loads a lease's state and event before its attempt (false:
	// nothing to attempt; the lease is ended).
	Ready(l *Lease) bool
}

// OnChange implements Directory: a single node makes every change itself.
func (d *DB) OnChange(func(DirectoryChange)) {}

var _ Store = (*DB)(nil)
