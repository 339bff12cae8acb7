package engine_test

import (
	"testing"

	"github.com/mailwire/mailwire/internal/testserver"
)

func TestMain(m *testing.M) { testserver.RunWithLeakCheck(m) }
