package store

import (
	"fmt"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
)

// Inbox is a mailbox of an account. Its address is MailboxName@Domain.
// Mailbox names are unique across every domain the server serves.
type Inbox struct {
	ID          string `json:"id"`
	AccountID   string `json:"accountId"`
	MailboxName string `json:"mailboxName"`
	// Domain is the domain of the address when the inbox was created on
	// one the client named; "" means the server's default domain (which
	// follows --mail-domain).
	Domain string `json:"domain,omitempty"`
	// PodID is OpenMail's pod, as the client gave it (stored and shown,
	// nothing else: an account is mailwire's only tenant boundary).
	PodID       string `json:"podId,omitempty"`
	DisplayName string `json:"displayName,omitempty"`
	WebhookURL  string `json:"webhookUrl,omitempty"`
	// WebhookSecret signs this inbox's webhooks ("whsec_..."); kept in
	// plain text because signing needs it.
	WebhookSecret string    `json:"webhookSecret,omitempty"`
	CreatedAt     time.Time `json:"createdAt"`
}

// Webhook is an account's default webhook, used for inboxes without their
// own URL.
type Webhook struct {
	URL       string    `json:"url"`
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"createdAt"`
}

// CreateInbox stores a new inbox; ErrConflict when the mailbox name is
// taken (by any account: addresses are global).
func (d *DB) CreateInbox(in Inbox) (Inbox, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	if in.ID == "" {
		in.ID = ids.New(ids.Inbox)
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = time.Now().UTC()
	}
	taken, err := d.has(key2(pAddress, in.MailboxName))
	if err != nil {
		return Inbox{}, err
	}
	if taken {
		return Inbox{}, ErrConflict
	}
	if _, err := d.GetAccount(in.AccountID); err != nil {
		return Inbox{}, fmt.Errorf("cannot create inbox: account %s: %w", in.AccountID, err)
	}
	b := d.pdb.NewBatch()
	setJSON(b, key2(pInbox, in.ID), in)
	_ = b.Set(key(pAccountInbox+in.AccountID, in.ID), nil, nil)
	_ = b.Set(key2(pAddress, in.MailboxName), []byte(in.ID), nil)
	if err := d.commit(b); err != nil {
		return Inbox{}, fmt.Errorf("cannot create inbox: %w", err)
	}
	d.settingsGen.Add(1)
	return in, nil
}

// GetInbox returns an inbox of the account; ErrNotFound when it does not
// exist or belongs to another account (callers cannot tell the two apart).
func (d *DB) GetInbox(accountID, id string) (Inbox, error) {
	in, err := d.getInbox(id)
	if err != nil {
		return Inbox{}, err
	}
	if in.AccountID != accountID {
		return Inbox{}, ErrNotFound
	}
	return in, nil
}

// getInbox reads an inbox, cached until any inbox or webhook changes.
func (d *DB) getInbox(id string) (Inbox, error) {
	gen := d.settingsGen.Load()
	if in, ok := d.inboxes.get(gen, id); ok {
		return in, nil
	}
	var in Inbox
	if err := d.getJSON(key2(pInbox, id), &in); err != nil {
		return Inbox{}, err
	}
	d.inboxes.put(gen, id, in)
	return in, nil
}

// InboxByMailbox finds an inbox by its mailbox name (lower-case local part
// of the address, without +tag).
//
// The address index is cached like inboxes (until any inbox or webhook
// changes): every RCPT TO looks its address up, and a point read in a
// memtable holding the recent messages costs more than the rest of the
// command. Addresses that do not exist are not cached.
func (d *DB) InboxByMailbox(mailbox string) (Inbox, error) {
	gen := d.settingsGen.Load()
	id, ok := d.addresses.get(gen, mailbox)
	if !ok {
		raw, err := d.getRaw(key2(pAddress, mailbox))
		if err != nil {
			return Inbox{}, err
		}
		id = string(raw)
		d.addresses.put(gen, mailbox, id)
	}
	return d.getInbox(id)
}

// InboxOwned reports whether inbox id exists and belongs to the account.
func (d *DB) InboxOwned(accountID, id string) (bool, error) {
	return d.has(key(pAccountInbox+accountID, id))
}

// ListInboxes returns a page of the account's inboxes (creation order) and
// the total.
func (d *DB) ListInboxes(accountID string, p Page) ([]Inbox, int, error) {
	var idsPage []string
	total := 0
	pfx := prefixKey(pAccountInbox + accountID)
	err := d.scan(pfx, false, func(k, _ []byte) bool {
		if total >= p.Offset && len(idsPage) < p.Limit {
			idsPage = append(idsPage, string(k[len(pfx):]))
		}
		total++
		return true
	})
	if err != nil {
		return nil, 0, fmt.Errorf("cannot list inboxes: %w", err)
	}
	out := make([]Inbox, 0, len(idsPage))
	for _, id := range idsPage {
		in, err := d.getInbox(id)
		if err != nil {
			return nil, 0, fmt.Errorf("cannot list inboxes: %s: %w", id, err)
		}
		out = append(out, in)
	}
	return out, total, nil
}

// UpdateInbox applies fn to the account's inbox and stores the result
// atomically with respect to other control-plane changes. fn must not
// change ID, AccountID or MailboxName. An error from fn aborts the update.
func (d *DB) UpdateInbox(accountID, id string, fn func(*Inbox) error) (Inbox, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	in, err := d.GetInbox(accountID, id)
	if err != nil {
		return Inbox{}, err
	}
	if err := fn(&in); err != nil {
		return Inbox{}, err
	}
	b := d.pdb.NewBatch()
	setJSON(b, key2(pInbox, in.ID), in)
	if err := d.commit(b); err != nil {
		return Inbox{}, fmt.Errorf("cannot update inbox: %w", err)
	}
	d.settingsGen.Add(1)
	return in, nil
}

// DeleteInbox removes an inbox with its messages, attachments, threads
// (and their read marks), idempotency records, events, attempts and due
// entries. It returns the
// ids of the deleted events.
func (d *DB) DeleteInbox(accountID, id string) ([]string, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	in, err := d.GetInbox(accountID, id)
	if err != nil {
		return nil, err
	}
	// Exclude concurrent ingest into this inbox, and delivery-state writes
	// (which could write a state back after we deleted it), while we scan
	// and delete.
	l := d.inboxLock(id)
	l.Lock()
	defer l.Unlock()
	d.stateMu.Lock()
	defer d.stateMu.Unlock()

	b := d.pdb.NewBatch()
	_ = b.Delete(key2(pInbox, id), nil)
	_ = b.Delete(key(pAccountInbox+accountID, id), nil)
	_ = b.Delete(key2(pAddress, in.MailboxName), nil)
	mpfx := prefixKey(pInboxMessage + id)
	threads := map[string]bool{}
	var threadErr error
	err = d.scan(mpfx, false, func(k, v []byte) bool {
		msgID := string(k[len(mpfx):])
		if threadErr = d.deleteInboxThreads(b, msgID, v, threads); threadErr != nil {
			return false
		}
		deleteValue(b, key2(pMessage, msgID))
		deleteValue(b, key2(pRaw, msgID))
		ap := prefixKey(pAttachment + msgID)
		_ = b.DeleteRange(ap, prefixEnd(ap), nil)
		return true
	})
	if err == nil {
		err = threadErr
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("cannot delete inbox messages: %w", err)
	}
	for _, p := range []string{pInboxMessage, pThread, pThreadRead, pIdempotency} {
		pk := prefixKey(p + id)
		_ = b.DeleteRange(pk, prefixEnd(pk), nil)
	}
	var evts []string
	spfx := prefixKey(pEventState + accountID)
	var decErr error
	err = d.scan(spfx, false, func(k, v []byte) bool {
		st, err := decodeState(v)
		if err != nil {
			decErr = err
			return false
		}
		if st.InboxID != id {
			return true
		}
		evtID := string(k[len(spfx):])
		evts = append(evts, evtID)
		_ = b.Delete(key2(pEvent, evtID), nil)
		_ = b.Delete(k, nil)
		ap := prefixKey(pAttempt + evtID)
		_ = b.DeleteRange(ap, prefixEnd(ap), nil)
		if st.NextAt != 0 {
			_ = b.Delete(dueKey(st.NextAt, evtID), nil)
		}
		return true
	})
	if err == nil {
		err = decErr
	}
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("cannot delete inbox events: %w", err)
	}
	if err := d.commit(b); err != nil {
		return nil, fmt.Errorf("cannot delete inbox: %w", err)
	}
	d.deleted.Store(id, struct{}{})
	d.settingsGen.Add(1)
	return evts, nil
}

// GetWebhook returns the account's default webhook or ErrNotFound.
func (d *DB) GetWebhook(accountID string) (Webhook, error) {
	var w Webhook
	err := d.getJSON(key2(pWebhook, accountID), &w)
	return w, err
}

// UpdateWebhook applies fn to the account's webhook (the zero Webhook and
// exists=false when none is set) and stores the result. fn returns
// remove=true to delete the webhook.
func (d *DB) UpdateWebhook(accountID string, fn func(w *Webhook, exists bool) (remove bool, err error)) (Webhook, error) {
	d.ctl.Lock()
	defer d.ctl.Unlock()
	w, err := d.GetWebhook(accountID)
	exists := err == nil
	if err != nil && err != ErrNotFound {
		return Webhook{}, err
	}
	remove, err := fn(&w, exists)
	if err != nil {
		return Webhook{}, err
	}
	b := d.pdb.NewBatch()
	if remove {
		_ = b.Delete(key2(pWebhook, accountID), nil)
	} else {
		if w.CreatedAt.IsZero() {
			w.CreatedAt = time.Now().UTC()
		}
		setJSON(b, key2(pWebhook, accountID), w)
	}
	if err := d.commit(b); err != nil {
		return Webhook{}, fmt.Errorf("cannot update webhook: %w", err)
	}
	d.settingsGen.Add(1)
	return w, nil
}
