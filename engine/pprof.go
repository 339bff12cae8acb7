package engine

import (
	"net/http"
	"net/http/pprof"
)

// debugPprof serves Go's profiles under /debug/pprof/{name} (admin token
// required): profile (CPU, ?seconds=), trace, heap, allocs, goroutine,
// block, mutex, threadcreate. A CPU profile blocks its handler worker for
// its duration.
func (s *Server) debugPprof(w http.ResponseWriter, r *req) error {
	switch name := r.param("name"); name {
	case "profile":
		pprof.Profile(w, r.Request)
	case "trace":
		pprof.Trace(w, r.Request)
	case "heap", "allocs", "goroutine", "block", "mutex", "threadcreate":
		pprof.Handler(name).ServeHTTP(w, r.Request)
	default:
		return errf(http.StatusNotFound, codeNotFound, "no profile "+quoteShort(name)+": profile, trace, heap, allocs, goroutine, block, mutex, threadcreate")
	}
	return nil
}
