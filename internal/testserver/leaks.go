package testserver

import (
	"testing"

	"github.com/mailwire/mailwire/internal/leakcheck"
)

// RunWithLeakCheck runs the tests and then fails the run if goroutines
// outlive them (see leakcheck). Use it as TestMain's body.
func RunWithLeakCheck(m *testing.M) { leakcheck.Main(m) }
