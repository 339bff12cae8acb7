package testserver

import (
	"os"
	"testing"
)

// Tool returns path, the independent client or tool a test drives
// (installed by scripts/test-deps, e.g. /usr/bin/swaks). When it is
// missing the test is skipped, or fails under `make test`
// (MAILWIRE_REQUIRE_TOOLS=1), which installs it first.
func Tool(t testing.TB, path, pkg string) string {
	t.Helper()
	if _, err := os.Stat(path); err != nil {
		if os.Getenv("MAILWIRE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s is missing (Debian package %s; scripts/test-deps installs it)", path, pkg)
		}
		t.Skipf("%s is missing (Debian package %s; run scripts/test-deps)", path, pkg)
	}
	return path
}

// Python returns Debian's python3 after checking that its websockets
// package (python3-websockets, the client OpenMail's guide uses) is there.
func Python(t testing.TB) string {
	t.Helper()
	Tool(t, "/usr/lib/python3/dist-packages/websockets", "python3-websockets")
	return Tool(t, "/usr/bin/python3", "python3")
}
