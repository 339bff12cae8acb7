package engine

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
)

// mcp is POST /v1/mcp: the MCP server's streamable HTTP transport
// (internal/mcpserver), behind the same Bearer key check as every /v1
// route. The body is read here, within maxMCPBody, as for every other
// route; the handler then runs on this request's worker for the whole
// call (a wait_for_email holds it up to its timeout, bounded per account
// by the pull API's cap on held requests, which its wait goes through).
func (s *Server) mcp(w http.ResponseWriter, r *req) error {
	if s.deps.MCP == nil {
		return errf(http.StatusNotFound, codeNotFound, "the MCP endpoint is not enabled on this server")
	}
	body, err := readBody(r, maxMCPBody)
	if err != nil {
		return err
	}
	hr := r.Request
	hr.Body, hr.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	hr.Header.Set("Content-Length", strconv.Itoa(len(body)))
	s.deps.MCP.ServeHTTP(w, hr)
	return nil
}
