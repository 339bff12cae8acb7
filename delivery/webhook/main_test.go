package webhook

import (
	"testing"

	"github.com/mailwire/mailwire/internal/leakcheck"
)

// TestMain fails the run when a goroutine outlives the tests (leakcheck:
// fasthttp's connection cleaners are waited for a bounded time).
func TestMain(m *testing.M) { leakcheck.Main(m) }
