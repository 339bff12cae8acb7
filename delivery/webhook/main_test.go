package webhook

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain fails the run when a goroutine outlives the tests. fasthttp's
// connection cleaners sleep up to the clients' IdleConnTimeout (1 s in the
// tests) before they notice there is nothing left to clean, so leaks are
// polled for a bounded time instead of checked once.
//
// The one goroutine ignored is fasthttp's server date updater: the first
// fasthttp.Server of a process (BenchmarkPost's receiver) starts it, once,
// for the life of the process.
func TestMain(m *testing.M) {
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
