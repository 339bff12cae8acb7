package engine

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/mailwire/mailwire/delivery/webhook"
	"github.com/mailwire/mailwire/internal/ids"
	"github.com/mailwire/mailwire/store"
)

// inboxView is an inbox as the API shows it.
type inboxView struct {
	ID            string  `json:"id"`
	Address       string  `json:"address"`
	MailboxName   string  `json:"mailboxName"`
	DisplayName   *string `json:"displayName"`
	WebhookURL    *string `json:"webhookUrl"`
	WebhookSecret string  `json:"webhookSecret,omitempty"`
	PodID         *string `json:"podId"`
	CreatedAt     string  `json:"createdAt"`
}

func (s *Server) viewInbox(in store.Inbox) inboxView {
	return inboxView{
		ID: in.ID, Address: s.deps.Ingest.Address(in), MailboxName: in.MailboxName,
		DisplayName: strPtr(in.DisplayName), WebhookURL: strPtr(in.WebhookURL),
		PodID: strPtr(in.PodID), CreatedAt: apiTime(in.CreatedAt),
	}
}

const maxDisplayName = 200

func checkDisplayName(v string) error {
	if !utf8.ValidString(v) || utf8.RuneCountInString(v) > maxDisplayName || strings.ContainsAny(v, "\r\n") {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, fmt.Sprintf("displayName must be one line of at most %d characters", maxDisplayName))
	}
	return nil
}

// maxPodID bounds podId (OpenMail's pod ids and clientIds are at most
// 255 characters).
const maxPodID = 255

func checkPodID(v string) error {
	if !utf8.ValidString(v) || len(v) > maxPodID || strings.ContainsAny(v, "\r\n") {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, fmt.Sprintf("podId must be one line of at most %d bytes", maxPodID))
	}
	return nil
}

// checkWebhookURL validates a webhook URL (scheme, userinfo, SSRF).
func (s *Server) checkWebhookURL(field, raw string) error {
	if _, err := webhook.ValidateURL(raw, s.cfg.AllowPrivateWebhooks); err != nil {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, field+": "+err.Error())
	}
	return nil
}

func newSecret() (string, error) {
	sec, err := webhook.NewSecret()
	if err != nil {
		return "", fmt.Errorf("cannot generate webhook secret: %w", err)
	}
	return sec, nil
}

func (s *Server) createInbox(w http.ResponseWriter, r *req) error {
	var body struct {
		MailboxName string  `json:"mailboxName"`
		DisplayName *string `json:"displayName"`
		WebhookURL  *string `json:"webhookUrl"`
		Domain      *string `json:"domain"`
		PodID       *string `json:"podId"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	name := strings.ToLower(strings.TrimSpace(body.MailboxName))
	if name == "" {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, "mailboxName is required")
	}
	if !mailboxRE.MatchString(name) {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, "mailboxName must be 3 to 30 characters of a-z, 0-9, '.', '_' and '-'")
	}
	in := store.Inbox{AccountID: r.accountID, MailboxName: name}
	if body.Domain != nil && *body.Domain != "" {
		d, ok := s.deps.Ingest.Serves(*body.Domain)
		if !ok {
			return errf(http.StatusUnprocessableEntity, codeInvalidValue, "domain "+quoteShort(*body.Domain)+
				" is not served here (served: "+strings.Join(s.deps.Ingest.Domains(), ", ")+")")
		}
		if d != s.deps.Ingest.MailDomain() {
			in.Domain = d // the default domain is not stored: it follows --mail-domain
		}
	}
	if body.PodID != nil {
		if err := checkPodID(*body.PodID); err != nil {
			return err
		}
		in.PodID = *body.PodID
	}
	if body.DisplayName != nil {
		if err := checkDisplayName(*body.DisplayName); err != nil {
			return err
		}
		in.DisplayName = *body.DisplayName
	}
	if body.WebhookURL != nil && *body.WebhookURL != "" {
		if err := s.checkWebhookURL("webhookUrl", *body.WebhookURL); err != nil {
			return err
		}
		sec, err := newSecret()
		if err != nil {
			return err
		}
		in.WebhookURL, in.WebhookSecret = *body.WebhookURL, sec
	}
	created, err := s.deps.DB.CreateInbox(in)
	if errors.Is(err, store.ErrConflict) {
		return errf(http.StatusConflict, codeAddressTaken, "the address "+s.deps.Ingest.Address(in)+" is taken"+
			" (mailbox names are unique across the server's domains)")
	}
	if err != nil {
		return err
	}
	v := s.viewInbox(created)
	v.WebhookSecret = created.WebhookSecret
	return writeJSON(w, http.StatusCreated, v)
}

func (s *Server) listInboxes(w http.ResponseWriter, r *req) error {
	limit, offset, err := page(r)
	if err != nil {
		return err
	}
	ins, total, err := s.deps.DB.ListInboxes(r.accountID, store.Page{Limit: limit, Offset: offset})
	if err != nil {
		return err
	}
	out := list[inboxView]{Data: make([]inboxView, 0, len(ins)), Total: total}
	for _, in := range ins {
		out.Data = append(out.Data, s.viewInbox(in))
	}
	return writeJSON(w, http.StatusOK, out)
}

// ownedInbox returns the account's inbox named by the {id} parameter.
func (s *Server) ownedInbox(r *req) (store.Inbox, error) {
	id, err := idParam(r, "id", ids.Inbox, "inbox")
	if err != nil {
		return store.Inbox{}, err
	}
	in, err := s.deps.DB.GetInbox(r.accountID, id)
	if err != nil {
		return store.Inbox{}, mapStoreErr(err, "inbox "+id)
	}
	return in, nil
}

func (s *Server) getInbox(w http.ResponseWriter, r *req) error {
	in, err := s.ownedInbox(r)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, s.viewInbox(in))
}

func (s *Server) patchInbox(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Inbox, "inbox")
	if err != nil {
		return err
	}
	var body struct {
		DisplayName optString `json:"displayName"`
		WebhookURL  optString `json:"webhookUrl"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.DisplayName.Set && !body.DisplayName.Null {
		if err := checkDisplayName(body.DisplayName.Value); err != nil {
			return err
		}
	}
	if body.WebhookURL.Set && !body.WebhookURL.Null && body.WebhookURL.Value != "" {
		if err := s.checkWebhookURL("webhookUrl", body.WebhookURL.Value); err != nil {
			return err
		}
	}
	secretShown := ""
	in, err := s.deps.DB.UpdateInbox(r.accountID, id, func(in *store.Inbox) error {
		if body.DisplayName.Set {
			in.DisplayName = body.DisplayName.Value // "" when null
		}
		if body.WebhookURL.Set {
			if body.WebhookURL.Null || body.WebhookURL.Value == "" {
				in.WebhookURL, in.WebhookSecret = "", ""
			} else {
				if in.WebhookURL == "" {
					sec, err := newSecret()
					if err != nil {
						return err
					}
					in.WebhookSecret, secretShown = sec, sec
				}
				in.WebhookURL = body.WebhookURL.Value
			}
		}
		return nil
	})
	if err != nil {
		return mapStoreErr(err, "inbox "+id)
	}
	v := s.viewInbox(in)
	v.WebhookSecret = secretShown
	return writeJSON(w, http.StatusOK, v)
}

func (s *Server) deleteInbox(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Inbox, "inbox")
	if err != nil {
		return err
	}
	if _, err := s.deps.DB.DeleteInbox(r.accountID, id); err != nil {
		return mapStoreErr(err, "inbox "+id)
	}
	s.hub.InboxDeleted(r.accountID, id)
	w.WriteHeader(http.StatusNoContent)
	return nil
}

func (s *Server) rotateInboxSecret(w http.ResponseWriter, r *req) error {
	id, err := idParam(r, "id", ids.Inbox, "inbox")
	if err != nil {
		return err
	}
	var sec string
	_, err = s.deps.DB.UpdateInbox(r.accountID, id, func(in *store.Inbox) error {
		if in.WebhookURL == "" {
			return errNoWebhookURL("inbox " + id + " has no webhook URL; set webhookUrl first")
		}
		var err error
		sec, err = newSecret()
		in.WebhookSecret = sec
		return err
	})
	if err != nil {
		return mapStoreErr(err, "inbox "+id)
	}
	return writeJSON(w, http.StatusOK, map[string]string{"webhookSecret": sec})
}

func (s *Server) testInboxWebhook(w http.ResponseWriter, r *req) error {
	in, err := s.ownedInbox(r)
	if err != nil {
		return err
	}
	url, secret := in.WebhookURL, in.WebhookSecret
	if url == "" {
		wh, err := s.deps.DB.GetWebhook(r.accountID)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		url, secret = wh.URL, wh.Secret
	}
	if url == "" {
		return errNoWebhookURL("no webhook URL is configured for inbox " + in.ID + " or its account")
	}
	evtID := ids.New(ids.Event)
	now := apiTime(timeNow())
	body := fmt.Appendf(nil, `{"event":"webhook.test","event_id":%q,"occurred_at":%q,"delivered_at":%q,"attempt":1,"inbox_id":%q,"test":true}`,
		evtID, now, now, in.ID)
	res := s.deps.Delivery.TestWebhook(url, secret, body, evtID)
	if res.Err != nil {
		return errf(http.StatusBadGateway, codeWebhookFailed, "test event to "+url+" failed: "+res.Err.Error())
	}
	return writeJSON(w, http.StatusOK, map[string]any{
		"ok":      true,
		"message": fmt.Sprintf("%s answered %d in %d ms", url, res.Status, res.Duration.Milliseconds()),
	})
}

// Account webhook.

func (s *Server) getWebhook(w http.ResponseWriter, r *req) error {
	wh, err := s.deps.DB.GetWebhook(r.accountID)
	if err != nil {
		return mapStoreErr(err, "account webhook")
	}
	return writeJSON(w, http.StatusOK, map[string]string{"url": wh.URL})
}

func (s *Server) putWebhook(w http.ResponseWriter, r *req) error {
	var body struct {
		URL *string `json:"url"`
	}
	if err := decodeJSON(r, &body); err != nil {
		return err
	}
	if body.URL == nil || *body.URL == "" {
		return errf(http.StatusUnprocessableEntity, codeInvalidValue, "url is required")
	}
	if err := s.checkWebhookURL("url", *body.URL); err != nil {
		return err
	}
	shown := ""
	wh, err := s.deps.DB.UpdateWebhook(r.accountID, func(wh *store.Webhook, exists bool) (bool, error) {
		if !exists || wh.Secret == "" {
			sec, err := newSecret()
			if err != nil {
				return false, err
			}
			wh.Secret, shown = sec, sec
		}
		wh.URL = *body.URL
		return false, nil
	})
	if err != nil {
		return err
	}
	out := map[string]string{"url": wh.URL}
	if shown != "" {
		out["secret"] = shown
	}
	return writeJSON(w, http.StatusOK, out)
}

func (s *Server) deleteWebhook(w http.ResponseWriter, r *req) error {
	_, err := s.deps.DB.UpdateWebhook(r.accountID, func(_ *store.Webhook, exists bool) (bool, error) {
		if !exists {
			return false, errNotFoundWebhook
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

var errNotFoundWebhook = errf(http.StatusNotFound, codeNotFound, "no account webhook is set")

func (s *Server) rotateWebhookSecret(w http.ResponseWriter, r *req) error {
	var sec string
	_, err := s.deps.DB.UpdateWebhook(r.accountID, func(wh *store.Webhook, exists bool) (bool, error) {
		if !exists {
			return false, errNotFoundWebhook
		}
		var err error
		sec, err = newSecret()
		wh.Secret = sec
		return false, err
	})
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, map[string]string{"secret": sec})
}
