package engine

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/mailwire/mailwire/internal/ids"
)

// authKind says what a route requires.
type authKind uint8

const (
	authNone    authKind = iota
	authAccount          // Authorization: Bearer <API key>
	authAdmin            // Authorization: Bearer <admin token>
)

// req is what a handler gets: the request, its path parameters and the
// authenticated account (authAccount routes).
type req struct {
	*http.Request
	params    map[string]string
	accountID string
	keyID     string
	requestID string // X-Request-Id of the request and its answer
}

func (r *req) param(name string) string { return r.params[name] }

type handler func(w http.ResponseWriter, r *req) error

type route struct {
	method string
	segs   []string // literal segments, or "{name}"
	path   string   // "/pattern", the metrics' route label
	auth   authKind
	h      handler
	noHead bool // a GET route that HEAD does not reach (the WebSocket upgrade)
}

// getOnly keeps HEAD away from a GET route (RFC 6455: the opening
// handshake is a GET).
func (r *route) getOnly() { r.noHead = true }

// router matches "METHOD /a/{b}/c" patterns; it is small on purpose (the
// route list is the API spec, read top to bottom).
type router struct {
	routes []*route
}

func (rt *router) add(pattern string, auth authKind, h handler) *route {
	method, path, _ := strings.Cut(pattern, " ")
	r := &route{method: method, segs: splitPath(path), path: path, auth: auth, h: h}
	rt.routes = append(rt.routes, r)
	return r
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// match returns the route for method and path and its parameters; when
// there is none, allow lists the methods the path has (405 when not empty).
func (rt *router) match(method, path string) (_ *route, _ map[string]string, allow []string) {
	segs := splitPath(path)
	for _, r := range rt.routes {
		if len(r.segs) != len(segs) {
			continue
		}
		var params map[string]string
		ok := true
		for i, s := range r.segs {
			if len(s) > 2 && s[0] == '{' {
				if segs[i] == "" {
					ok = false
					break
				}
				if params == nil {
					params = make(map[string]string, 2)
				}
				params[s[1:len(s)-1]] = segs[i]
			} else if s != segs[i] {
				ok = false
				break
			}
		}
		if !ok {
			continue
		}
		headOK := r.method == http.MethodGet && !r.noHead
		if r.method != method && !(method == http.MethodHead && headOK) {
			allow = append(allow, r.method)
			if headOK {
				allow = append(allow, http.MethodHead)
			}
			continue
		}
		return r, params, nil
	}
	return nil, nil, allow
}

// serveHTTP is the nbhttp handler: route, authenticate, run, account.
func (s *Server) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	start := time.Now()
	path := redactKeys(hr.URL.EscapedPath())
	rid := requestID(hr.Header.Get(requestIDHeader))
	w.Header().Set(requestIDHeader, rid)
	rt, params, allow := s.router.match(hr.Method, hr.URL.Path)
	name := "unmatched"
	var err error
	sw := &statusWriter{ResponseWriter: w, head: hr.Method == http.MethodHead, gzipOK: acceptsGzip(hr.Header.Get("Accept-Encoding"))}
	switch {
	case rt != nil:
		name = rt.path
		err = s.run(sw, hr, rt, params, rid)
	case len(allow) > 0:
		// RFC 9110 §15.5.6: a 405 lists the methods the resource has.
		allowed := strings.Join(allow, ", ")
		w.Header().Set("Allow", allowed)
		err = errf(http.StatusMethodNotAllowed, codeMethodNotAllowed, hr.Method+" is not allowed on "+path+" (allowed: "+allowed+")")
	default:
		err = errf(http.StatusNotFound, codeNotFound, "no route "+hr.Method+" "+path)
	}
	if err != nil {
		s.writeErr(sw, hr, err)
	}
	if sw.head {
		sw.finishHead()
	}
	s.m.request(hr.Method, name, sw.status(), start)
	if s.cfg.AccessLog {
		s.access.Info("http request", "method", hr.Method, "path", path, "route", name, "status", sw.status(),
			"duration_ms", float64(time.Since(start).Microseconds())/1000, "bytes", sw.written, "remote", hr.RemoteAddr,
			"request_id", rid)
	}
}

// requestIDHeader carries a request's id: the client's when it sent a
// sane one (a proxy's, to follow a request through both logs), else one
// made here. Every answer has it, and log lines about the request name it.
const requestIDHeader = "X-Request-Id"

// requestID is the client's X-Request-Id when it is 1 to 128 printable
// characters that need no quoting in a log line, else a new id.
func requestID(h string) string {
	if len(h) >= 1 && len(h) <= 128 {
		ok := true
		for i := 0; i < len(h) && ok; i++ {
			c := h[i]
			ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("-_.:/+=@", c) >= 0
		}
		if ok {
			return h
		}
	}
	return ids.New("req_")
}

func (s *Server) run(w http.ResponseWriter, hr *http.Request, rt *route, params map[string]string, rid string) error {
	r := &req{Request: hr, params: params, requestID: rid}
	switch rt.auth {
	case authAccount:
		if s.draining.Load() {
			return errDraining
		}
		k, err := s.authenticate(bearer(hr))
		if err != nil {
			return err
		}
		r.accountID, r.keyID = k.AccountID, k.ID
	case authAdmin:
		if err := s.authorizeAdmin(bearer(hr)); err != nil {
			return err
		}
	}
	return rt.h(w, r)
}

// statusWriter remembers the status for metrics. For HEAD it drops the
// body (headers, Content-Length included, stay as for GET): nbhttp would
// send it, and a client reading a HEAD answer takes those bytes for the
// start of the next response on the connection.
type statusWriter struct {
	http.ResponseWriter
	code    int
	head    bool
	dropped int  // body bytes not sent (HEAD)
	written int  // body bytes the handler wrote
	gzipOK  bool // the client accepts gzip (JSON answers, compressJSON)
}

// finishHead gives a HEAD answer the Content-Length the GET answer would
// have had, when the handler set none: without one nbhttp would answer
// chunked and send the final empty chunk, which a HEAD client does not
// read. nbhttp encodes the head only when the handler has returned.
func (w *statusWriter) finishHead() {
	h := w.Header()
	if h.Get("Content-Length") == "" && h.Get("Transfer-Encoding") == "" {
		h.Set("Content-Length", strconv.Itoa(w.dropped))
	}
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.WriteHeader(http.StatusOK)
	}
	w.written += len(b)
	if w.head {
		w.dropped += len(b)
		return len(b), nil
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}

// Unwrap lets http.ResponseController and the upgrade reach nbhttp's
// response (Hijack).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
