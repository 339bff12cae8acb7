package testserver

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// RunWithLeakCheck runs the tests and then fails the run if goroutines
// outlive them. fasthttp's client cleaners (webhook delivery) exit only a
// few seconds after their last connection, so leaks are polled for a
// bounded time instead of checked once. Use it as TestMain's body.
func RunWithLeakCheck(m *testing.M) {
	code := m.Run()
	if code == 0 {
		deadline := time.Now().Add(15 * time.Second)
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
			time.Sleep(100 * time.Millisecond) // polling interval
		}
	}
	os.Exit(code)
}
