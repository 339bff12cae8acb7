package delivery

import (
	"time"

	"github.com/mailwire/mailwire/delivery/webhook"
)

// send signs body for this attempt (PROTOCOL.md §7) and posts it.
func (d *Dispatcher) send(url, secret, evtID string, at time.Time, body []byte) webhook.Result {
	return d.hooks.Post(url, webhook.SignHeaders(secret, evtID, at.Unix(), body), body)
}

// TestWebhook sends a signed test event to url with secret, synchronously,
// and returns the result (nothing is recorded).
func (d *Dispatcher) TestWebhook(url, secret string, body []byte, evtID string) webhook.Result {
	return d.send(url, secret, evtID, d.now(), body)
}
