package smtpd

import (
	"strings"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"

	"github.com/mailwire/mailwire/store"
)

// walWriteError fails writes and syncs of Pebble's WAL files while on.
func walWriteError() *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.HasSuffix(op.Path, ".log") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData, errorfs.OpFileSyncTo:
			return errorfs.ErrInjected
		}
		return nil
	})}
}

// A WAL write error while a message is committed: Pebble treats it as
// fatal (the store's logger panics in the committing goroutine, i.e. in
// DeliverRaw), and the store refuses every later commit (ErrFailed). The client gets
// 451 4.3.0 each time, never 250, and once the database is reopened
// nothing of those messages exists: only the message acknowledged before
// the fault does.
//
// The dispatcher is kept quiet (first attempts an hour away): its writer
// commits on its own goroutine, where the same panic would end the test
// binary, as it would end mailwire.
func TestStorageErrorWAL(t *testing.T) {
	dir := t.TempDir()
	fault := walWriteError()
	e := newEnv(t, envOptions{fs: errorfs.Wrap(vfs.Default, fault), dir: dir, quietDelivery: true})
	c := hello(t, e.srv.Addr())
	send := func(subject, want string) {
		t.Helper()
		c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<agent@localhost>", "250 ")
		c.data(message(subject, "body"), want)
	}
	send("before the fault", "250 ")

	fault.On()
	send("during the fault", "451 4.3.0 ")
	send("during the fault, again", "451 4.3.0 ")
	c.cmd("NOOP", "250 ") // the session survives its 451s
	// The first commit panics; the store is failed from then on, so the
	// second is refused before it reaches Pebble.
	if got := e.rejected(reasonInternal); got != 1 {
		t.Errorf("internal_error = %v, want 1", got)
	}
	if got := e.rejected(reasonStorage); got != 1 {
		t.Errorf("storage_error = %v, want 1", got)
	}
	if !strings.Contains(e.logs.String(), "storing a message panicked") {
		t.Error("the panic was not logged")
	}
	// Pebble applies a batch to the memtable before its WAL sync reports
	// the failure, so this process may still read the unacknowledged
	// messages; they are not durable.
	t.Logf("messages visible in the failed process: %d", len(e.messages("agent")))
	c.close()

	fault.Off()
	if err := e.stop(); err == nil {
		t.Log("closing the failed store reported no error")
	}
	db, err := store.Open(store.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	msgs, _, err := db.ListMessages(e.inboxes["agent"].ID, store.Page{Limit: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != 1 || msgs[0].Subject != "before the fault" {
		t.Fatalf("after reopening: %d messages (%+v); want only the acknowledged one", len(msgs), msgs)
	}
	evts, _, err := db.ListEvents(e.account.ID, store.EventFilter{}, store.Page{Limit: 10})
	if err != nil || len(evts) != 1 {
		t.Fatalf("after reopening: %d events (%v), want 1", len(evts), err)
	}
}

// tableWriteFull fails writes of the tables a large message is stored in
// (store/tables.go) with ENOSPC while on.
func tableWriteFull() *errorfs.Toggle {
	return &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if !strings.Contains(op.Path, "mailwire-ingest") {
			return nil
		}
		switch op.Kind {
		case errorfs.OpFileWrite, errorfs.OpFileWriteAt, errorfs.OpFileSync, errorfs.OpFileSyncData:
			return syscall.ENOSPC
		}
		return nil
	})}
}

// A disk that fills up while a large message's tables are written: the
// message gets 452 4.3.1 (nothing was stored), the server goes on (a small
// message is stored meanwhile), and the same large message is stored once
// there is room. Before, such a write failure was answered 451 4.3.0 as
// an unknown storage error.
func TestStorageFullWhileWritingTables(t *testing.T) {
	dir := t.TempDir()
	fault := tableWriteFull()
	e := newEnv(t, envOptions{fs: errorfs.Wrap(vfs.Default, fault), dir: dir, quietDelivery: true})
	c := hello(t, e.srv.Addr())
	send := func(subject, body, want string) {
		t.Helper()
		c.cmd("MAIL FROM:<alice@example.com>", "250 ")
		c.cmd("RCPT TO:<agent@localhost>", "250 ")
		c.data(message(subject, body), want)
	}
	large := strings.Repeat("A line of a large message, written as tables.\r\n", 5<<20/48)
	fault.On()
	send("large, disk full", large, "452 4.3.1 ")
	send("small, disk full for tables", "body", "250 ")
	if got := e.rejected(reasonDiskFull); got != 1 {
		t.Errorf("disk_full = %v, want 1", got)
	}
	fault.Off()
	send("large, room again", large, "250 ")
	c.close()
	var subjects []string
	for _, m := range e.messages("agent") {
		subjects = append(subjects, m.Subject)
	}
	if strings.Contains(strings.Join(subjects, "|"), "large, disk full") || len(subjects) != 2 {
		t.Errorf("stored: %q, want the small message and the large one sent with room", subjects)
	}
}
