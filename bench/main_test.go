package bench

import (
	"fmt"
	"os"
	"testing"

	"github.com/lesismal/nbio/logging"

	"github.com/mailwire/mailwire/internal/leakcheck"
)

// TestMain serves as a client worker when a test started this binary as
// one (--client-procs), and otherwise fails the run when a goroutine
// outlives the tests (leakcheck).
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) != "" {
		if err := WorkerMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	logging.SetLevel(logging.LevelError)
	os.Exit(leakcheck.Check(m.Run()))
}
