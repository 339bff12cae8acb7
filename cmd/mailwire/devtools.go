package main

import (
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// trigger is `mailwire trigger`: one test message through the inbound
// API, so a developer can exercise a handler without sending mail.
func trigger(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mailwire trigger", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the mailwire server `URL`")
	token := fs.String("token", "", "the account's API `key` (om_...)")
	inbox := fs.String("inbox", "", "the inbox `id` (inb_...) to send to")
	from := fs.String("from", "trigger@example.com", "the sender `address`")
	subject := fs.String("subject", "", "the `subject` (default: one naming the time)")
	text := fs.String("text", "A test message sent by mailwire trigger.", "the body `text`")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailwire trigger --token KEY --inbox ID [flags]\n\nSends a test message to an inbox through POST /v1/inboxes/{id}/inbound and prints\nthe answer (message, event and thread ids). Flags also read MAILWIRE_<FLAG>.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *token == "" || *inbox == "" {
		return fmt.Errorf("trigger needs --token and --inbox (see mailwire trigger --help)")
	}
	if *subject == "" {
		*subject = "mailwire trigger at " + time.Now().UTC().Format(time.RFC3339)
	}
	body := map[string]string{"from": *from, "subject": *subject, "text": *text}
	return apiCall(strings.TrimRight(*server, "/"), *token, http.MethodPost, "/v1/inboxes/"+url.PathEscape(*inbox)+"/inbound", body, out)
}

// events is `mailwire events resend EVENT`.
func events(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mailwire events", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the mailwire server `URL`")
	token := fs.String("token", "", "the account's API `key` (om_...)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), "Usage: mailwire events --token KEY resend EVENT\n\nStarts a new delivery cycle for the event (evt_...): POST /v1/events/{id}/redeliver.\nFlags also read MAILWIRE_<FLAG>.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	a := fs.Args()
	if len(a) != 2 || a[0] != "resend" {
		return fmt.Errorf("usage: mailwire events --token KEY resend EVENT (see mailwire events --help)")
	}
	if *token == "" {
		return fmt.Errorf("events needs --token (see mailwire events --help)")
	}
	return apiCall(strings.TrimRight(*server, "/"), *token, http.MethodPost, "/v1/events/"+url.PathEscape(a[1])+"/redeliver", nil, out)
}
