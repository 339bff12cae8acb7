package engine

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"

	"github.com/mailwire/mailwire/store"
)

// bearer returns the token of an "Authorization: Bearer <token>" header.
func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

// authenticate resolves an API key to its key record.
func (s *Server) authenticate(key string) (store.APIKey, error) {
	if key == "" {
		s.m.authFailures.Inc()
		return store.APIKey{}, errUnauthorized
	}
	k, err := s.deps.DB.Authenticate(key)
	if errors.Is(err, store.ErrNotFound) {
		s.m.authFailures.Inc()
		return store.APIKey{}, errUnauthorized
	}
	if err != nil {
		return store.APIKey{}, err
	}
	return k, nil
}

// authorizeAdmin checks the admin token in constant time (over hashes, so
// the comparison does not depend on the lengths either).
func (s *Server) authorizeAdmin(token string) error {
	if s.cfg.AdminToken == "" {
		return errf(http.StatusForbidden, codeAdminDisabled, "the admin API is disabled: start the server with --admin-token or MAILWIRE_ADMIN_TOKEN")
	}
	want := sha256.Sum256([]byte(s.cfg.AdminToken))
	got := sha256.Sum256([]byte(token))
	if token == "" || subtle.ConstantTimeCompare(want[:], got[:]) != 1 {
		s.m.authFailures.Inc()
		return errf(http.StatusUnauthorized, codeUnauthorized, "missing or invalid admin token")
	}
	return nil
}
