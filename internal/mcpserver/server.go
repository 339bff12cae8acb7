// Package mcpserver is mailwire's MCP server (github.com/modelcontextprotocol/go-sdk):
// the tools list_inboxes, wait_for_email, list_threads, read_thread,
// read_message, mark_thread_read and get_attachment, over two transports:
//
//   - stdio (NewStdio), run by `mailwire mcp --server URL --token KEY` for
//     a desktop agent: the tools call the server's REST API with the key;
//   - streamable HTTP at /v1/mcp (Handler), served by the server itself:
//     stateless (no session; every POST carries the Bearer key) with JSON
//     answers, the tools calling the server's own REST API over loopback
//     with the request's key.
//
// Either way a tool acts only through the REST API with the caller's key,
// so it sees what that key may see and nothing of another account; the
// API's own checks are the isolation. wait_for_email blocks on the pull
// API (GET /v1/events/stream), which holds each request on the server
// until an event is stored.
//
// Concurrency: a server and a handler are safe for concurrent use; tool
// calls start no goroutine that outlives them. Over HTTP a call runs on
// the HTTP handler's goroutine for its whole wait (the engine's work
// pool), bounded by the pull API's per-account cap on held requests.
package mcpserver

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// NewStdio returns the server `mailwire mcp` runs over stdio: its tools
// call the API at serverURL with key. It remembers wait_for_email's
// cursor per filter (one caller), so consecutive calls miss nothing even
// when the model does not pass the cursor back.
func NewStdio(serverURL, key string, opts Options) (*mcp.Server, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--server must be the server's http:// or https:// URL, got %q", serverURL)
	}
	if key == "" {
		return nil, errors.New("an API key is required (--token or MAILWIRE_TOKEN)")
	}
	opts = opts.withDefaults()
	base := strings.TrimRight(serverURL, "/")
	c := &apiClient{base: base, key: key, hc: newHTTPClient(pullWaitMax)}
	t := &tools{opts: opts, publicBase: base, cursors: &cursorMemory{m: map[cursorKey]string{}},
		client: func(context.Context, *mcp.CallToolRequest) (*apiClient, error) { return c, nil }}
	return newServer(t), nil
}

// Run serves s over in and out (stdin and stdout for `mailwire mcp`)
// until in closes or ctx ends.
func Run(ctx context.Context, s *mcp.Server, in io.Reader, out io.Writer) error {
	err := s.Run(ctx, &mcp.IOTransport{Reader: io.NopCloser(in), Writer: nopWriteCloser{out}})
	if ctx.Err() != nil {
		return nil
	}
	return err
}

type nopWriteCloser struct{ io.Writer }

func (nopWriteCloser) Close() error { return nil }

// Handler returns the streamable HTTP transport for /v1/mcp. The route
// in front of it has authenticated the Bearer key; each tool call acts
// with that key against base() (the server's own address, loopback),
// read when a call needs it. Stateless with JSON answers: no session to
// keep, no stream to flush; a GET is 405 (clients tolerate it).
func Handler(base func() string, opts Options) http.Handler {
	opts = opts.withDefaults()
	hc := newHTTPClient(pullWaitMax)
	hc.Transport = &http.Transport{
		MaxIdleConns: 256, MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second,
		Proxy: nil, // loopback: never through a proxy from the environment
	}
	t := &tools{opts: opts, client: func(_ context.Context, req *mcp.CallToolRequest) (*apiClient, error) {
		key := ""
		if req.Extra != nil && req.Extra.Header != nil {
			key, _ = strings.CutPrefix(req.Extra.Header.Get("Authorization"), "Bearer ")
		}
		if key == "" {
			return nil, errors.New("no API key with the request (Authorization: Bearer <key>)")
		}
		return &apiClient{base: base(), key: strings.TrimSpace(key), hc: hc}, nil
	}}
	s := newServer(t)
	return mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s },
		&mcp.StreamableHTTPOptions{Stateless: true, JSONResponse: true})
}
