// Package leakcheck fails a test binary whose goroutines outlive its
// tests. fasthttp's client cleaners (webhook delivery) exit only a few
// seconds after their last connection, so leaks are polled for a bounded
// time instead of checked once. It imports nothing of mailwire, so every
// package's TestMain can use it.
package leakcheck

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Within is how long goroutines may take to end after the tests.
const Within = 15 * time.Second

// Check returns code, or 1 when goroutines are still running Within after
// the tests passed. The goroutine fasthttp starts once per process for its
// servers' Date header is ignored.
func Check(code int) int {
	if code != 0 {
		return code
	}
	deadline := time.Now().Add(Within)
	for {
		err := goleak.Find(goleak.IgnoreAnyFunction("github.com/valyala/fasthttp.updateServerDate.func1"))
		if err == nil {
			return code
		}
		if time.Now().After(deadline) {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			return 1
		}
		time.Sleep(100 * time.Millisecond) // polling interval
	}
}

// Main is a TestMain body: run the tests, then check.
func Main(m *testing.M) { os.Exit(Check(m.Run())) }
