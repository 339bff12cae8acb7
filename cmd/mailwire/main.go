// Command mailwire is the mailwire server and its clients:
//
//	mailwire serve    run the server (HTTP API, /v1/ws, SMTP)
//	mailwire admin    manage accounts and API keys through /admin/v1
//	mailwire listen   stream events from /v1/ws (print or forward them)
//	mailwire trigger  send a test message to an inbox
//	mailwire events   redeliver an event
//	mailwire mcp      serve the MCP tools over stdio (docs/AGENTS.md)
//	mailwire version  print the version
//
// See docs/OPERATIONS.md for every flag.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/mailwire/mailwire/internal/pdftext"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

const usage = `mailwire — real-time email events over WebSockets and webhooks

Usage:
  mailwire serve   [flags]   run the server (mailwire serve --help)
  mailwire admin   [flags] accounts create NAME | accounts list | keys list ACCOUNT | keys create ACCOUNT | keys revoke KEY
  mailwire listen  [flags]   print or forward events from /v1/ws (mailwire listen --help)
  mailwire trigger [flags] --inbox ID   send a test message to an inbox through the inbound API
  mailwire events  [flags] resend EVENT  redeliver an event (a new delivery cycle)
  mailwire mcp     --server URL --token KEY   MCP tools over stdio, for agents (docs/AGENTS.md)
  mailwire version           print the version
`

func main() {
	pdftext.Child() // the PDF text extraction child, when re-executed as one
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "serve":
		err = serve(os.Args[2:])
	case "admin":
		err = admin(os.Args[2:], os.Stdout)
	case "listen":
		err = listen(os.Args[2:], os.Stdout, os.Stderr)
	case "trigger":
		err = trigger(os.Args[2:], os.Stdout)
	case "events":
		err = events(os.Args[2:], os.Stdout)
	case "mcp":
		err = mcpCmd(os.Args[2:], os.Stdin, os.Stdout, os.Stderr)
	case "version", "--version", "-version":
		fmt.Println("mailwire", version)
	case "help", "--help", "-h", "-help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "mailwire: unknown command %q (see mailwire --help)\n", os.Args[1])
		os.Exit(2)
	}
	switch {
	case err == nil, errors.Is(err, errHelp):
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintln(os.Stderr, "mailwire:", err)
		os.Exit(1)
	}
}
