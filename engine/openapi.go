package engine

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPIDoc is the OpenAPI 3 document of the HTTP API, written by
// scripts/gen-openapi.py; TestOpenAPIMatchesRoutes checks that it lists
// exactly the routes of routes().
//
//go:embed openapi.json
var openAPIDoc []byte

// openAPI is GET /v1/openapi.json.
func (s *Server) openAPI(w http.ResponseWriter, _ *req) error {
	body := compressJSON(w, openAPIDoc)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(body)
	return err
}
