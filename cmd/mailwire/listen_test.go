package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/internal/testserver"
)

func TestListenFlags(t *testing.T) {
	clearEnv(t)
	var out, errOut bytes.Buffer
	err := listen([]string{"--no-such"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "see mailwire listen --help") || strings.Contains(errOut.String(), "Usage:") {
		t.Fatalf("bad flag: %v; stderr %q", err, errOut.String())
	}
	err = listen(nil, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--token") {
		t.Fatalf("no token: %v", err)
	}
	err = listen([]string{"--token", "om_x", "--forward-to", "ftp://x"}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "--forward-to") {
		t.Fatalf("bad --forward-to: %v", err)
	}
	errOut.Reset()
	if err := listen([]string{"--help"}, &out, &errOut); err != errHelp || !strings.Contains(errOut.String(), "--forward-to") {
		t.Fatalf("--help: %v %q", err, errOut.String())
	}
}

func TestTriggerAndResend(t *testing.T) {
	clearEnv(t)
	s := testserver.Start(t)
	acc := s.NewAccount("d")
	in := s.NewInbox(acc.Key, "agent")
	var out bytes.Buffer
	if err := trigger([]string{"--server", s.URL, "--token", acc.Key, "--inbox", in, "--subject", "try me"}, &out); err != nil {
		t.Fatal(err)
	}
	var got struct{ MessageID, EventID string }
	if err := json.Unmarshal(out.Bytes(), &got); err != nil || !strings.HasPrefix(got.EventID, "evt_") {
		t.Fatalf("trigger printed %q (%v)", out.String(), err)
	}
	var m struct{ Subject string }
	s.MustJSON("GET", "/v1/messages/"+got.MessageID, acc.Key, nil, 200, &m)
	if m.Subject != "try me" {
		t.Fatalf("subject %q", m.Subject)
	}
	out.Reset()
	if err := events([]string{"--server", s.URL, "--token", acc.Key, "resend", got.EventID}, &out); err != nil || !strings.Contains(out.String(), "pending") {
		t.Fatalf("events resend: %v %q", err, out.String())
	}
	if err := events([]string{"--server", s.URL, "--token", acc.Key, "resend", "evt_01M8C9RB9X5V865CKTKNCS7WF4"}, &out); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("resend of an unknown event: %v", err)
	}
	if err := trigger([]string{"--server", s.URL, "--token", acc.Key}, &out); err == nil || !strings.Contains(err.Error(), "--inbox") {
		t.Fatalf("trigger without --inbox: %v", err)
	}
}
