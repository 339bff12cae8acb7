package engine_test

import (
	"net/http"
	"strings"
	"testing"
)

func TestConsoleRoutes(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	for _, path := range []string{"/console", "/console/", "/console/index.html"} {
		st, body, h := call(s, "GET", path, "", nil)
		if st != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/html") || !strings.Contains(string(body), `src="/console/app.js"`) {
			t.Fatalf("GET %s: %d %s", path, st, h)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self';") || h.Get("X-Frame-Options") != "DENY" {
			t.Fatalf("GET %s: CSP %q", path, csp)
		}
	}
	st, _, h := call(s, "GET", "/console/app.js", "", nil)
	if st != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/javascript") || h.Get("ETag") == "" || h.Get("Cache-Control") != "no-cache" {
		t.Fatalf("app.js: %d %v", st, h)
	}
	// Revalidation, then HEAD and a GET on the same connection: each
	// answer must leave the next one readable.
	c := dialRaw(t, s)
	if _, err := c.Write([]byte("GET /console/app.js HTTP/1.1\r\nHost: x\r\nIf-None-Match: " + h.Get("ETag") + "\r\n\r\n" +
		"HEAD /console HTTP/1.1\r\nHost: x\r\n\r\nGET /console/console.css HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if resp, body := c.readResponse(t, "GET"); resp.StatusCode != http.StatusNotModified || len(body) != 0 {
		t.Fatalf("revalidation: %d %q", resp.StatusCode, body)
	}
	if resp, body := c.readResponse(t, "HEAD"); resp.StatusCode != http.StatusOK || len(body) != 0 || resp.ContentLength <= 0 {
		t.Fatalf("HEAD /console: %d %q %d", resp.StatusCode, body, resp.ContentLength)
	}
	if resp, body := c.readResponse(t, "GET"); resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "box-sizing") {
		t.Fatalf("GET after them: %d", resp.StatusCode)
	}
	checkErr(t, s, "GET", "/console/nope.js", "", nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "GET", "/console/a/b", "", nil, http.StatusNotFound, "not_found")
	checkErr(t, s, "POST", "/console", "", nil, http.StatusMethodNotAllowed, "method_not_allowed")
}
