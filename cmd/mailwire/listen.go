package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/mailwire/mailwire/internal/listener"
)

// stringsFlag is a repeatable string flag.
type stringsFlag []string

func (s *stringsFlag) String() string     { return strings.Join(*s, ",") }
func (s *stringsFlag) Set(v string) error { *s = append(*s, v); return nil }

const listenUsage = `Usage: mailwire listen --server URL --token KEY [flags]

Streams the account's events from /v1/ws: prints each one (a readable line
on a terminal, a JSON line otherwise or with --json), or forwards it, signed,
to a local URL (--forward-to), one line per attempt; a failing local target
is retried (the production schedule by default) and nothing is acked or
skipped until it answers 2xx. Reconnects with backoff and resumes after the
last handled event, kept in the state directory with the forward secret.

Exits with a one-line reason when the key is refused (4001), the account has
too many connections (4008), an --inbox does not exist, or after
--max-reconnects failed attempts in a row. Flags also read MAILWIRE_<FLAG>.

Flags:
`

// listen is `mailwire listen`.
func listen(args []string, stdout, stderr io.Writer) error {
	var c listener.Config
	var inboxes, events stringsFlag
	retry := append([]time.Duration(nil), listener.DefaultRetry...)
	jsonOut := false
	fs := flag.NewFlagSet("mailwire listen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.Server, "server", "http://127.0.0.1:8080", "the mailwire server `URL`")
	fs.StringVar(&c.Token, "token", "", "the account's API `key` (om_...)")
	fs.Var(&inboxes, "inbox", "subscribe to this inbox `id` only (repeatable); default: every inbox")
	fs.Var(&events, "events", "subscribe to this event `type` only (repeatable); default: every type")
	fs.StringVar(&c.Since, "since", "", "start after this event `id` (backfill) instead of the saved position")
	fs.StringVar(&c.ForwardTo, "forward-to", "", "POST each event, signed, to this local `URL` instead of printing it")
	fs.StringVar(&c.ForwardSecret, "forward-secret", "", "the whsec_ `secret` that signs forwarded events (default: the state directory's own, made once)")
	fs.Var(scheduleValue{&retry}, "retry-schedule", "`delays` before each retry of the local target (the last repeats)")
	fs.StringVar(&c.StateDir, "state-dir", "", "`directory` keeping the last handled event and the forward secret (default: in the user config directory, per server and key)")
	fs.BoolVar(&jsonOut, "json", false, "print events as JSON lines (the default when stdout is not a terminal)")
	fs.IntVar(&c.MaxReconnects, "max-reconnects", 30, "give up after this many failed connection attempts in a row (0: never)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), listenUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	c.Inboxes, c.Events, c.Retry = inboxes, events, retry
	c.JSON = jsonOut || !isTerminal(stdout)
	c.Out, c.Log = stdout, stderr
	l, err := listener.New(c)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := l.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// isTerminal reports whether w is a terminal (a character device).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
