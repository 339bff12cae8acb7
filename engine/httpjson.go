package engine

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/mailwire/mailwire/ingest"
	"github.com/mailwire/mailwire/store"
)

// writeJSON answers status with v as JSON.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("cannot encode response: %w", err)
	}
	body := compressJSON(w, buf.Bytes())
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, err := w.Write(body)
	return err
}

// writeErr answers an error: apiErrors as they are, anything else as a
// logged 500 (never leaking internals).
func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.Is(err, store.ErrReadOnly), errors.Is(err, store.ErrNoSpace):
		w.Header().Set("Retry-After", "60")
		ae = errf(http.StatusInsufficientStorage, codeInsufficientStorage, "the server's disk is full: changes are refused until space comes back")
	case errors.Is(err, store.ErrUnconfirmed):
		w.Header().Set("Retry-After", "5")
		ae = errf(http.StatusServiceUnavailable, codeUnavailable, "storage is unavailable: NATS did not confirm the write in time; it may have been stored, and a retry may deliver it twice")
		s.log.Warn("request refused: write not confirmed", "method", r.Method, "path", redactKeys(r.URL.Path), "error", err,
			"request_id", w.Header().Get(requestIDHeader))
	case errors.Is(err, store.ErrUnavailable):
		w.Header().Set("Retry-After", "5")
		ae = errf(http.StatusServiceUnavailable, codeUnavailable, "storage is unavailable (the cluster cannot reach NATS); nothing was stored, retry shortly")
		s.log.Warn("request refused: storage unavailable", "method", r.Method, "path", redactKeys(r.URL.Path), "error", err,
			"request_id", w.Header().Get(requestIDHeader))
	case errors.Is(err, store.ErrFailed):
		w.Header().Set("Retry-After", "5")
		ae = errf(http.StatusServiceUnavailable, codeUnavailable, "storage failed; the server is restarting, retry shortly (nothing was stored)")
	}
	if ae == nil && !errors.As(err, &ae) {
		s.log.Error("request failed", "method", r.Method, "path", redactKeys(r.URL.Path), "error", err,
			"request_id", w.Header().Get(requestIDHeader))
		ae = errInternal
	}
	if ae.Status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="mailwire"`)
	}
	_ = writeJSON(w, ae.Status, ae)
}

// readBody reads the whole body, refusing more than limit bytes (413).
// nbhttp has already buffered it (bounded by limitProcessor).
func readBody(r *req, limit int) ([]byte, error) {
	return readBodyInto(r, limit, func(n int) []byte { return make([]byte, 0, n) })
}

// readRawMessage is readBody for a raw message: with a Content-Length the
// buffer is in's RawBuffer, whose spare capacity lets the store build its
// batch over the message instead of beside it.
func readRawMessage(r *req, limit int, in *ingest.Service) ([]byte, error) {
	if rb, ok := r.Body.(*rawBody); ok {
		// Read by the request gate into a RawBuffer already (ownBody).
		if b, ok := rb.take(r.ContentLength); ok {
			return b, nil
		}
	}
	return readBodyInto(r, limit, in.RawBuffer)
}

// readBodyInto is readBody reading a body of declared size n into
// alloc(n)[:n].
func readBodyInto(r *req, limit int, alloc func(n int) []byte) ([]byte, error) {
	if r.ContentLength > int64(limit) {
		return nil, errf(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
	}
	if n := r.ContentLength; n > 0 {
		// One buffer of the declared size: io.ReadAll would grow one by
		// doubling, and for a 20 MiB message allocate about 2× it in
		// buffers it drops (nbhttp frees its own buffers as they are read).
		b := alloc(int(n))[:n]
		if _, err := io.ReadFull(r.Body, b); err != nil {
			return nil, errf(http.StatusBadRequest, codeBadRequest, "cannot read request body: "+err.Error())
		}
		return b, nil
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(limit)+1))
	if err != nil {
		return nil, errf(http.StatusBadRequest, codeBadRequest, "cannot read request body: "+err.Error())
	}
	if len(b) > limit {
		return nil, errf(http.StatusRequestEntityTooLarge, codeTooLarge, fmt.Sprintf("request body is larger than %d bytes", limit))
	}
	return b, nil
}

// decodeJSON decodes a JSON object body strictly: one object, no unknown
// fields, types as declared. Errors say what was wrong.
func decodeJSON(r *req, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" && !isJSONType(ct) {
		return errf(http.StatusUnsupportedMediaType, codeUnsupportedType, "Content-Type must be application/json, not "+ct)
	}
	body, err := readBody(r, maxJSONBody)
	if err != nil {
		return err
	}
	return decodeJSONBytes(body, v)
}

func decodeJSONBytes(body []byte, v any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return errf(http.StatusBadRequest, codeInvalidJSON, "request body is empty; a JSON object is expected")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return errf(http.StatusBadRequest, codeInvalidJSON, describeJSONError(err))
	}
	if dec.More() {
		return errf(http.StatusBadRequest, codeInvalidJSON, "unexpected data after the JSON object")
	}
	return nil
}

func isJSONType(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	mt = strings.TrimSpace(strings.ToLower(mt))
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// describeJSONError turns encoding/json's errors into client messages.
func describeJSONError(err error) string {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		return fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se)
	case errors.As(err, &te):
		if te.Field != "" {
			return fmt.Sprintf("field %q must be %s, not %s", te.Field, jsonKind(te.Type.Kind().String()), te.Value)
		}
		return fmt.Sprintf("expected %s, not %s", jsonKind(te.Type.Kind().String()), te.Value)
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	}
	return "malformed JSON: " + err.Error()
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "slice", "array":
		return "an array"
	case "struct", "map":
		return "an object"
	case "bool":
		return "a boolean"
	case "int", "int64", "float64", "uint32":
		return "a number"
	}
	return k
}

// page parses ?limit and ?offset (API.md: default 50, max 100).
func page(r *req) (limit, offset int, err error) {
	limit, offset = defaultListLimit, 0
	q := r.URL.Query()
	if v := q.Get("limit"); v != "" {
		n, err := parseLimit(v, maxListLimit)
		if err != nil {
			return 0, 0, err
		}
		limit = n
	}
	if v := q.Get("offset"); v != "" {
		n, e := strconv.Atoi(v)
		if e != nil || n < 0 {
			return 0, 0, errf(http.StatusBadRequest, codeBadRequest, "offset must be a non-negative integer")
		}
		offset = n
	}
	return limit, offset, nil
}

// parseLimit parses a ?limit: a positive integer, larger values clamped
// to most (as OpenMail: a client asking for 1000 gets a full page, not an
// error).
func parseLimit(v string, most int) (int, error) {
	n, err := strconv.Atoi(v)
	if errors.Is(err, strconv.ErrRange) && v[0] != '-' {
		n, err = most, nil
	}
	if err != nil || n < 1 {
		return 0, errf(http.StatusBadRequest, codeBadRequest, fmt.Sprintf("limit must be a positive integer (at most %d are returned)", most))
	}
	return min(n, most), nil
}

// list is the API's list envelope.
type list[T any] struct {
	Data  []T `json:"data"`
	Total int `json:"total"`
}

// optString is a JSON field that can be absent, null or a string (PATCH).
type optString struct {
	Set   bool
	Null  bool
	Value string
}

func (o *optString) UnmarshalJSON(b []byte) error {
	o.Set = true
	if string(b) == "null" {
		o.Null = true
		return nil
	}
	return json.Unmarshal(b, &o.Value)
}
