package bench

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/lesismal/nbio/logging"
	"go.uber.org/goleak"
)

// TestMain serves as a client worker when a test started this binary as
// one (--client-procs), and otherwise fails the run when a goroutine
// outlives the tests. fasthttp's idle-connection cleaners notice they have
// nothing left only after a second or so, so leaks are polled for a
// bounded time instead of checked once; fasthttp's server date updater
// lives for the process once a fasthttp.Server (the webhook sink) ran.
func TestMain(m *testing.M) {
	if os.Getenv(WorkerEnv) != "" {
		if err := WorkerMain(os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	logging.SetLevel(logging.LevelError)
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := goleak.Find(goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
				code = 1
				break
			}
			time.Sleep(100 * time.Millisecond) // polling interval, not a wait for a condition
		}
	}
	os.Exit(code)
}
