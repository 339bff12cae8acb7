// Package console is mailwire's web console: plain HTML, CSS and
// JavaScript modules embedded in the binary (no build step, no
// dependencies) that the engine serves at GET /console and
// /console/{file}. The page talks to the public API only — /v1 with the
// account's API key, /v1/ws for the live tail, /admin/v1 with the admin
// token for the operator view — so it can do nothing a client cannot.
//
// # Safety
//
// Everything that arrives by mail is hostile. The scripts never build
// markup from strings (text goes through textContent, attributes through
// setAttribute), and a message's HTML is shown only in an iframe with
// sandbox="" (no scripts, no same origin, no forms, no popups) through
// srcdoc. The Content-Security-Policy below allows scripts from the
// console's own files only, so even markup that slipped through could not
// run; the sandboxed frame inherits it.
//
// # Caching
//
// Files are served with a strong ETag (a hash of their bytes) and
// Cache-Control: no-cache: browsers revalidate each load and get 304 while
// the binary is the same, so a new release is picked up at once without
// versioned file names.
package console

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"
)

//go:embed assets
var embedded embed.FS

// ContentSecurityPolicy is sent with every console file.
//
//   - script-src 'self': the console's modules, nothing inline or eval'd.
//   - style-src also allows inline styles: a message's HTML relies on them
//     and its sandboxed srcdoc frame inherits this policy; styles cannot
//     run code, and the console itself uses none.
//   - img-src 'self' data:: mail's remote images (trackers) stay blocked.
//   - connect-src 'self': the API and the WebSocket of this server only.
//   - frame-src 'none': the only frame is the message's srcdoc frame,
//     which loads no URL; frame-ancestors 'none': no one frames the console.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; " +
	"img-src 'self' data:; font-src 'self'; connect-src 'self'; frame-src 'none'; child-src 'none'; " +
	"worker-src 'none'; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one embedded file with its precomputed headers.
type file struct {
	body  []byte
	ctype string
	etag  string
}

var files = load()

func load() map[string]file {
	out := make(map[string]file)
	err := fs.WalkDir(embedded, "assets", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := embedded.ReadFile(p)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(b)
		out[strings.TrimPrefix(p, "assets/")] = file{body: b, ctype: contentType(p), etag: `"` + hex.EncodeToString(sum[:12]) + `"`}
		return nil
	})
	if err != nil {
		panic("BUG: cannot read the embedded console: " + err.Error())
	}
	return out
}

func contentType(p string) string {
	switch path.Ext(p) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	case ".svg":
		return "image/svg+xml"
	}
	return "application/octet-stream"
}

// Names lists the embedded files (for tests).
func Names() []string {
	out := make([]string, 0, len(files))
	for n := range files {
		out = append(out, n)
	}
	return out
}

// Serve answers a GET or HEAD for the named file ("index.html" for the
// page): 200 with the file, or 304 when If-None-Match names its ETag. It
// reports false, having written nothing, when there is no such file.
func Serve(w http.ResponseWriter, r *http.Request, name string) bool {
	f, ok := files[name]
	if !ok {
		return false
	}
	h := w.Header()
	h.Set("Content-Security-Policy", ContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", f.etag)
	// A 304 may carry only the Content-Length the 200 would have had
	// (RFC 9110 §8.6); without one, nbhttp would write "0".
	h.Set("Content-Length", strconv.Itoa(len(f.body)))
	if etagMatch(r.Header.Get("If-None-Match"), f.etag) {
		w.WriteHeader(http.StatusNotModified)
		return true
	}
	h.Set("Content-Type", f.ctype)
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(f.body)
	return true
}

// etagMatch implements If-None-Match's weak comparison (RFC 9110 §13.1.2).
func etagMatch(header, etag string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}
