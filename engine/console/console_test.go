package console

import (
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
)

func get(name, ifNoneMatch string) (*httptest.ResponseRecorder, bool) {
	r := httptest.NewRequest(http.MethodGet, "/console/"+name, nil)
	if ifNoneMatch != "" {
		r.Header.Set("If-None-Match", ifNoneMatch)
	}
	w := httptest.NewRecorder()
	return w, Serve(w, r, name)
}

func TestServeHeaders(t *testing.T) {
	names := Names()
	for _, want := range []string{"index.html", "app.js", "console.css"} {
		if !slices.Contains(names, want) {
			t.Fatalf("%s is not embedded (have %v)", want, names)
		}
	}
	for _, name := range names {
		w, ok := get(name, "")
		if !ok || w.Code != http.StatusOK {
			t.Fatalf("%s: served %v, status %d", name, ok, w.Code)
		}
		h := w.Header()
		if h.Get("Content-Security-Policy") != ContentSecurityPolicy || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Cache-Control") != "no-cache" || h.Get("ETag") == "" || h.Get("Content-Type") == "application/octet-stream" {
			t.Fatalf("%s: headers %v", name, h)
		}
		// The ETag validates: 304 with no body, and the 200's length.
		w2, _ := get(name, `"other", `+h.Get("ETag"))
		if w2.Code != http.StatusNotModified || w2.Body.Len() != 0 || w2.Header().Get("Content-Length") != h.Get("Content-Length") {
			t.Fatalf("%s: revalidation answered %d with %d bytes, headers %v", name, w2.Code, w2.Body.Len(), w2.Header())
		}
		if w3, _ := get(name, `"other"`); w3.Code != http.StatusOK {
			t.Fatalf("%s: a stale ETag answered %d", name, w3.Code)
		}
	}
	if w, ok := get("nope.js", ""); ok || w.Body.Len() != 0 {
		t.Fatal("an unknown file was served")
	}
}

func TestCSPIsStrict(t *testing.T) {
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'none'"} {
		if !strings.Contains(ContentSecurityPolicy, want) {
			t.Errorf("CSP lacks %q", want)
		}
	}
	if strings.Contains(ContentSecurityPolicy, "unsafe-eval") || regexp.MustCompile(`script-src[^;]*unsafe-inline`).MatchString(ContentSecurityPolicy) {
		t.Error("CSP lets scripts run inline or from eval")
	}
}

// TestNoMarkupFromStrings keeps the console's safety rule checkable: the
// page has no inline script or handler, and no script turns strings into
// markup or code (mail is shown through text nodes only).
func TestNoMarkupFromStrings(t *testing.T) {
	index := string(files["index.html"].body)
	if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<\s]`).MatchString(index) || regexp.MustCompile(`\son[a-z]+\s*=`).MatchString(index) {
		t.Error("index.html has an inline script or event handler attribute")
	}
	banned := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|\beval\(|new Function|createContextualFragment|DOMParser`)
	for _, name := range Names() {
		if !strings.HasSuffix(name, ".js") {
			continue
		}
		if m := banned.FindString(string(files[name].body)); m != "" {
			t.Errorf("%s uses %s", name, m)
		}
	}
}

func TestETagMatch(t *testing.T) {
	f := func(header string, want bool) {
		t.Helper()
		if got := etagMatch(header, `"abc"`); got != want {
			t.Errorf("etagMatch(%q) = %v", header, got)
		}
	}
	f(``, false)
	f(`"abc"`, true)
	f(`W/"abc"`, true)
	f(`"x", "abc"`, true)
	f(`*`, true)
	f(`"abcd"`, false)
	f(`abc`, false)
}
