package engine

import (
	"net/http"

	"github.com/mailwire/mailwire/engine/console"
)

// consolePage is GET /console: the web console's page (package console).
// It needs no credential: the page asks for one and calls the API with it.
func (s *Server) consolePage(w http.ResponseWriter, r *req) error {
	return serveConsole(w, r, "index.html")
}

// consoleFile is GET /console/{file}: the page's scripts and stylesheet.
func (s *Server) consoleFile(w http.ResponseWriter, r *req) error {
	return serveConsole(w, r, r.param("file"))
}

func serveConsole(w http.ResponseWriter, r *req, name string) error {
	if !console.Serve(w, r.Request, name) {
		return errf(http.StatusNotFound, codeNotFound, "no console file "+quoteShort(name))
	}
	return nil
}
