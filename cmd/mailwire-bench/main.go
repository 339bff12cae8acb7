// Command mailwire-bench is the load harness of mailwire: it runs a named
// scenario (connect, fanout, webhook, ingest, replay, churn) or the short
// standard set against a server it starts or one that is running, and
// reports figures as a summary, a JSON record and an HTML chart. Every
// scenario documents its knobs under --help; the method is in
// docs/bench/HARNESS.md. The work is in package bench; this is its
// command line.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/lesismal/nbio/logging"

	"github.com/mailwire/mailwire/bench"
)

func main() {
	// nbio logs every engine start and stop at info level, to stdout:
	// only its errors, and to stderr (stdout has the results).
	logging.SetLevel(logging.LevelError)
	logging.Output = os.Stderr
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := bench.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
