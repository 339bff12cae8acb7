package ws

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
)

// command is a decoded client frame (PROTOCOL.md §2).
type command struct {
	Type        string
	InboxIDs    []string
	EventTypes  []string
	LastEventID string
	EventID     string
	Ack         *bool // subscribe: the connection's ack mode, when given
}

// wireCommand is the JSON shape; pointers tell absent from present.
type wireCommand struct {
	Type        *string   `json:"type"`
	InboxIDs    *[]string `json:"inbox_ids"`
	EventTypes  *[]string `json:"event_types"`
	LastEventID *string   `json:"last_event_id"`
	EventID     *string   `json:"event_id"`
	Ack         *bool     `json:"ack"`
}

// frameFields lists the fields each frame type takes besides "type".
// Any other field makes the frame a bad frame (an error, subscription
// unchanged): an unsubscribe carrying event_types, or a misspelt
// "inboxIds", must not be read as something else.
var frameFields = map[string][]string{
	"subscribe":   {"inbox_ids", "event_types", "last_event_id", "ack"},
	"unsubscribe": {"inbox_ids"},
	"ack":         {"event_id"},
	"ping":        nil,
}

const expectedTypes = "expected subscribe, unsubscribe, ack or ping"

// decodeCommand parses one client text frame. The error's text is sent to
// the client as is, so it says what was wrong.
func decodeCommand(b []byte) (command, error) {
	var w wireCommand
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&w); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return command{}, fmt.Errorf("field %q must be %s", te.Field, fieldKind(te.Field))
		case errors.As(err, &te):
			return command{}, errors.New(`a frame must be a JSON object with a "type" field`)
		case errors.Is(err, io.EOF):
			return command{}, errors.New(`empty frame: a JSON object with a "type" field is expected`)
		}
		return command{}, fmt.Errorf("invalid JSON: %v", err)
	}
	if dec.More() {
		return command{}, errors.New("invalid JSON: data after the object")
	}
	if w.Type == nil || *w.Type == "" {
		return command{}, errors.New(`missing "type": ` + expectedTypes)
	}
	c := command{Type: *w.Type, Ack: w.Ack}
	allowed, known := frameFields[c.Type]
	if !known {
		return command{}, fmt.Errorf("unknown type %s: %s", quoteShort(c.Type), expectedTypes)
	}
	if extra := extraFields(b, allowed); len(extra) > 0 {
		what := "no fields"
		if len(allowed) > 0 {
			what = "only " + strings.Join(allowed, ", ")
		}
		return command{}, fmt.Errorf("%s takes %s, not %s; nothing changed", c.Type, what, strings.Join(extra, ", "))
	}
	if w.InboxIDs != nil {
		c.InboxIDs = *w.InboxIDs
	}
	if w.EventTypes != nil {
		c.EventTypes = *w.EventTypes
	}
	if w.LastEventID != nil {
		c.LastEventID = *w.LastEventID
	}
	if w.EventID != nil {
		c.EventID = *w.EventID
	}
	if c.Type == "ack" && c.EventID == "" {
		return command{}, errors.New(`ack needs "event_id"`)
	}
	if len(c.InboxIDs) > maxSubscribeIDs {
		return command{}, fmt.Errorf("too many inbox_ids: at most %d per frame", maxSubscribeIDs)
	}
	return c, nil
}

// extraFields returns the object's keys that are neither "type" nor in
// allowed, sorted and quoted (b is known to be one valid JSON object).
func extraFields(b []byte, allowed []string) []string {
	var m map[string]json.RawMessage
	if json.Unmarshal(b, &m) != nil {
		return nil
	}
	var extra []string
	for k := range m {
		if k == "type" {
			continue
		}
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			extra = append(extra, quoteShort(k))
		}
	}
	sort.Strings(extra)
	return extra
}

func fieldKind(field string) string {
	switch field {
	case "inbox_ids", "event_types":
		return "an array of strings"
	case "ack":
		return "a boolean"
	}
	return "a string"
}

// quoteShort quotes a client-supplied string for an error message, cut to
// 64 bytes, with invalid UTF-8 replaced; API keys are never echoed.
func quoteShort(s string) string {
	if strings.HasPrefix(s, "om_") {
		return `"om_…" (an API key: not shown)`
	}
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + strings.ToValidUTF8(s, "?") + `"`
}

func listText(ids []string) string {
	q := make([]string, 0, len(ids))
	for i, id := range ids {
		if i == 20 {
			q = append(q, fmt.Sprintf("… (%d more)", len(ids)-20))
			break
		}
		q = append(q, quoteShort(id))
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func errorFrame(msg string) []byte {
	return mustFrameJSON(struct {
		Type    string `json:"type"`
		Message string `json:"message"`
	}{"error", msg})
}

func mustFrameJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		panic(fmt.Sprintf("BUG: cannot encode frame %T: %v", v, err))
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n"))
}
