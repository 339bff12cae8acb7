package engine

import (
	"net/http"
	"strings"
	"time"
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
}

func (r *req) param(name string) string { return r.params[name] }

type handler func(w http.ResponseWriter, r *req) error

type route struct {
	method string
	segs   []string // literal segments, or "{name}"
	name   string   // "METHOD /pattern", the metrics label
	auth   authKind
	h      handler
}

// router matches "METHOD /a/{b}/c" patterns; it is small on purpose (the
// route list is the API spec, read top to bottom).
type router struct {
	routes []*route
}

func (rt *router) add(pattern string, auth authKind, h handler) {
	method, path, _ := strings.Cut(pattern, " ")
	rt.routes = append(rt.routes, &route{
		method: method, segs: splitPath(path), name: pattern, auth: auth, h: h,
	})
}

func splitPath(p string) []string {
	p = strings.Trim(p, "/")
	if p == "" {
		return nil
	}
	return strings.Split(p, "/")
}

// match returns the route for method and path, its parameters, and
// whether the path exists under another method (405).
func (rt *router) match(method, path string) (*route, map[string]string, bool) {
	segs := splitPath(path)
	pathExists := false
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
		if r.method != method && !(method == http.MethodHead && r.method == http.MethodGet) {
			pathExists = true
			continue
		}
		return r, params, false
	}
	return nil, nil, pathExists
}

// serveHTTP is the nbhttp handler: route, authenticate, run, account.
func (s *Server) serveHTTP(w http.ResponseWriter, hr *http.Request) {
	start := time.Now()
	path := hr.URL.EscapedPath()
	rt, params, other := s.router.match(hr.Method, hr.URL.Path)
	name := "unmatched"
	var err error
	sw := &statusWriter{ResponseWriter: w}
	switch {
	case rt != nil:
		name = rt.name
		err = s.run(sw, hr, rt, params)
	case other:
		err = errf(http.StatusMethodNotAllowed, codeMethodNotAllowed, hr.Method+" is not allowed on "+path)
	default:
		err = errf(http.StatusNotFound, codeNotFound, "no route "+hr.Method+" "+path)
	}
	if err != nil {
		s.writeErr(sw, hr, err)
	}
	s.m.request(name, sw.status(), start)
}

func (s *Server) run(w http.ResponseWriter, hr *http.Request, rt *route, params map[string]string) error {
	r := &req{Request: hr, params: params}
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

// statusWriter remembers the status for metrics.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
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
