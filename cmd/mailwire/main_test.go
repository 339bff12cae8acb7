package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mailwire/mailwire/internal/leakcheck"
)

func TestMain(m *testing.M) {
	code := leakcheck.Check(m.Run())
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error
	binOut  []byte
)

// mailwireBinary builds the mailwire command once per test run (without
// the race detector: tests that drive it as a user would want it as
// shipped) and returns its path.
func mailwireBinary(t *testing.T) string {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the binary")
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command in PATH")
	}
	binOnce.Do(func() {
		binDir, binErr = os.MkdirTemp("", "mailwire-bin-")
		if binErr != nil {
			return
		}
		binPath = filepath.Join(binDir, "mailwire")
		binOut, binErr = exec.Command(goBin, "build", "-o", binPath, ".").CombinedOutput()
	})
	if binErr != nil {
		t.Fatalf("go build: %v\n%s", binErr, binOut)
	}
	return binPath
}
