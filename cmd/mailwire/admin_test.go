package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/internal/testserver"
)

// runAdmin runs `mailwire admin args...` and returns its output.
func runAdmin(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := admin(args, &out)
	return out.String(), err
}

func TestAdminCommand(t *testing.T) {
	clearEnv(t)
	s := testserver.Start(t)
	flags := []string{"--server", s.URL + "/", "--admin-token", testserver.AdminToken}

	out, err := runAdmin(t, append(flags, "accounts", "create", "Acme Corp")...)
	if err != nil {
		t.Fatalf("accounts create: %v", err)
	}
	var acc struct{ ID, Name, APIKey string }
	if err := json.Unmarshal([]byte(out), &acc); err != nil {
		t.Fatalf("accounts create printed %q: %v", out, err)
	}
	if !strings.HasPrefix(acc.ID, "acc_") || acc.Name != "Acme Corp" || !regexp.MustCompile(`^om_[0-9a-f]{48}$`).MatchString(acc.APIKey) {
		t.Fatalf("created %+v", acc)
	}
	if !strings.Contains(out, "\n  \"") {
		t.Errorf("output is not indented JSON: %q", out)
	}
	s.MustJSON("GET", "/v1/inboxes", acc.APIKey, nil, http.StatusOK, nil)

	if _, err := runAdmin(t, append(flags, "accounts", "create", "Second")...); err != nil {
		t.Fatal(err)
	}
	out, err = runAdmin(t, append(flags, "accounts", "list")...)
	if err != nil {
		t.Fatalf("accounts list: %v", err)
	}
	var list struct {
		Data []struct {
			ID, Name string
		}
		Total int
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil || list.Total != 2 || list.Data[0].ID != acc.ID || list.Data[1].Name != "Second" {
		t.Fatalf("accounts list printed %q (%v)", out, err)
	}
	if strings.Contains(out, "om_") {
		t.Errorf("accounts list prints keys: %s", out)
	}

	out, err = runAdmin(t, append(flags, "keys", "create", acc.ID)...)
	if err != nil {
		t.Fatalf("keys create: %v", err)
	}
	var key struct{ ID, APIKey string }
	if err := json.Unmarshal([]byte(out), &key); err != nil || !strings.HasPrefix(key.ID, "key_") || !strings.HasPrefix(key.APIKey, "om_") {
		t.Fatalf("keys create printed %q (%v)", out, err)
	}
	s.MustJSON("GET", "/v1/inboxes", key.APIKey, nil, http.StatusOK, nil)

	// Every key has an id, the account's first key included, and the list
	// shows them without the keys themselves. (The first key used to come
	// without its id and could not be revoked.)
	var created struct{ KeyID string }
	_ = json.Unmarshal([]byte(mustRunAdmin(t, append(flags, "accounts", "create", "Third")...)), &created)
	if !strings.HasPrefix(created.KeyID, "key_") {
		t.Fatalf("accounts create gave no keyId")
	}
	out = mustRunAdmin(t, append(flags, "keys", "list", acc.ID)...)
	var keys struct {
		Data  []struct{ ID, Last4 string }
		Total int
	}
	if err := json.Unmarshal([]byte(out), &keys); err != nil || keys.Total != 2 || keys.Data[1].ID != key.ID ||
		keys.Data[1].Last4 != key.APIKey[len(key.APIKey)-4:] || strings.Contains(out, "om_") {
		t.Fatalf("keys list printed %q (%v)", out, err)
	}
	firstKey := keys.Data[0].ID
	if _, err := runAdmin(t, append(flags, "keys", "revoke", firstKey)...); err != nil {
		t.Fatalf("revoking the first key: %v", err)
	}
	s.MustJSON("GET", "/v1/inboxes", acc.APIKey, nil, http.StatusUnauthorized, nil)
	// A key pasted where its id belongs is not echoed back.
	_, err = runAdmin(t, append(flags, "keys", "revoke", key.APIKey)...)
	if err == nil || !strings.Contains(err.Error(), "400") || strings.Contains(err.Error(), key.APIKey[3:]) {
		t.Fatalf("revoking by the key itself: %v", err)
	}

	out, err = runAdmin(t, append(flags, "keys", "revoke", key.ID)...)
	if err != nil || strings.TrimSpace(out) != "ok" {
		t.Fatalf("keys revoke: %q %v", out, err)
	}
	s.MustJSON("GET", "/v1/inboxes", key.APIKey, nil, http.StatusUnauthorized, nil)

	// Errors carry the server's code and message.
	_, err = runAdmin(t, append(flags, "keys", "revoke", key.ID)...)
	if err == nil || !strings.Contains(err.Error(), "404") || !strings.Contains(err.Error(), "not_found") {
		t.Errorf("revoking twice: %v", err)
	}
	_, err = runAdmin(t, append(flags, "keys", "create", "acc_nope")...)
	if err == nil || !strings.Contains(err.Error(), "400") || !strings.Contains(err.Error(), "acc_nope") {
		t.Errorf("keys create with a bad id: %v", err)
	}
	_, err = runAdmin(t, "--server", s.URL, "--admin-token", "wrong", "accounts", "list")
	if err == nil || !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "unauthorized") || !strings.Contains(err.Error(), "admin token") {
		t.Errorf("wrong token: %v", err)
	}
	if err != nil && strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error echoes the token: %v", err)
	}
	_, err = runAdmin(t, "--server", s.URL, "accounts", "list")
	if err == nil || !strings.Contains(err.Error(), "--admin-token") {
		t.Errorf("no token: %v", err)
	}
	// The token from the environment; the flag wins over it.
	t.Setenv("MAILWIRE_ADMIN_TOKEN", testserver.AdminToken)
	t.Setenv("MAILWIRE_SERVER", s.URL)
	if _, err := runAdmin(t, "accounts", "list"); err != nil {
		t.Errorf("token and server from the environment: %v", err)
	}
	if _, err := runAdmin(t, "--admin-token", "wrong", "accounts", "list"); err == nil {
		t.Errorf("the variable won over --admin-token")
	}
	// Usage errors.
	for _, args := range [][]string{{"accounts"}, {"accounts", "create"}, {"accounts", "delete", "x"}, {"keys", "create"}, {"frobnicate"}, {}} {
		_, err := runAdmin(t, append(flags, args...)...)
		if err == nil || !strings.Contains(err.Error(), "see mailwire admin --help") || strings.Contains(err.Error(), "Commands:") {
			t.Errorf("admin %v: %v, want a one-line error pointing to --help", args, err)
		}
	}
}

func mustRunAdmin(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runAdmin(t, args...)
	if err != nil {
		t.Fatalf("admin %v: %v", args, err)
	}
	return out
}

func TestAdminCommandUnreachable(t *testing.T) {
	clearEnv(t)
	s := testserver.Start(t)
	url := s.URL
	s.Stop()
	_, err := runAdmin(t, "--server", url, "--admin-token", "t", "accounts", "list")
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Fatalf("unreachable server: %v", err)
	}
}

// TestAdminCommandListsEveryPage: accounts list prints every account, not
// only the API's first page of 100.
func TestAdminCommandListsEveryPage(t *testing.T) {
	clearEnv(t)
	s := testserver.Start(t)
	const n = 123
	for i := range n {
		s.NewAccount(testserver.Sprintf("acc-%03d", i))
	}
	out, err := runAdmin(t, "--server", s.URL, "--admin-token", testserver.AdminToken, "accounts", "list")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Data []struct {
			ID, Name string
		}
		Total int
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("printed %q: %v", out, err)
	}
	if list.Total != n || len(list.Data) != n {
		t.Fatalf("listed %d of total %d, want %d", len(list.Data), list.Total, n)
	}
	for i, a := range list.Data {
		if want := testserver.Sprintf("acc-%03d", i); a.Name != want {
			t.Fatalf("account %d is %q, want %q", i, a.Name, want)
		}
	}
}
