package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/mailwire/mailwire/internal/mcpserver"
	"github.com/mailwire/mailwire/internal/pdftext"
)

const mcpUsage = `Usage: mailwire mcp --server URL --token KEY

Serve mailwire's MCP tools over stdio (for a desktop agent or an IDE): the
host starts this command and speaks MCP on its stdin and stdout; the tools
call the server's API with the key. Logs go to stderr. See docs/AGENTS.md.

Flags (each also from MAILWIRE_<FLAG>, e.g. MAILWIRE_TOKEN):
`

// mcpCmd is `mailwire mcp`: stdout carries the protocol, so nothing else
// may be written there.
func mcpCmd(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	var server, token string
	var maxWait time.Duration
	fs := flag.NewFlagSet("mailwire mcp", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&server, "server", "http://127.0.0.1:8080", "the mailwire server `URL`")
	fs.StringVar(&token, "token", "", "the account's API `key` (om_...)")
	fs.DurationVar(&maxWait, "max-wait", 10*time.Minute, "the longest `timeout` wait_for_email accepts (it waits in pulls of at most 60 s)")
	fs.Usage = func() { fmt.Fprint(fs.Output(), mcpUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	pdf, err := pdftext.New("", pdftext.Limits{})
	if err != nil {
		log.Warn("PDF attachments will be described, not read", "error", err)
		pdf = nil
	}
	srv, err := mcpserver.NewStdio(server, token, mcpserver.Options{Version: version, PDF: pdf, MaxWait: maxWait})
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return mcpserver.Run(ctx, srv, stdin, stdout)
}
