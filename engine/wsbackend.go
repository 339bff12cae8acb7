package engine

import (
	"errors"
	"time"

	"github.com/mailwire/mailwire/delivery"
	"github.com/mailwire/mailwire/store"
)

// replayScanFactor bounds how many stored events one replay examines:
// the replay limit × this, so a narrow filter cannot scan the whole log.
const replayScanFactor = 100

// wsBackend is what the WebSocket side (engine/ws) needs from the store
// and delivery.
type wsBackend struct {
	db store.Store
	d  *delivery.Dispatcher
}

func (b wsBackend) UnownedInboxes(accountID string, ids []string) ([]string, error) {
	var out []string
	for _, id := range ids {
		owned, err := b.db.InboxOwned(accountID, id)
		if err != nil {
			return nil, err
		}
		if !owned {
			out = append(out, id)
		}
	}
	return out, nil
}

func (b wsBackend) EventKnown(accountID, evtID string) (bool, error) {
	_, err := b.db.GetEventState(accountID, evtID)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (b wsBackend) Replay(accountID, afterID string, limit int, match func(inbox, typ string) bool) ([]store.StoredEvent, string, error) {
	// Stop below the stable bound: an event still being stored could
	// precede one after it, and a client resuming from the last event
	// replayed would miss it. Events from the bound on come live.
	bound := b.d.StableBound(accountID)
	return b.db.EventsAfter(accountID, afterID, bound, limit, limit*replayScanFactor, match)
}

func (b wsBackend) Ack(accountID, evtID string) error {
	if _, err := b.db.GetEventState(accountID, evtID); err != nil {
		return err
	}
	return b.d.Ack(accountID, evtID)
}

func (b wsBackend) Replayed(accountID, evtID string, at time.Time) {
	b.d.Replayed(accountID, evtID, at)
}

func (b wsBackend) InFlight(evtID string) bool { return b.d.InFlight(evtID) }

func (b wsBackend) KeyValid(keyID string) (bool, error) { return b.db.KeyExists(keyID) }
