package mcpserver

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// apiClient calls mailwire's REST API with one account's key. Every tool
// goes through it, so a tool sees exactly what the key may see: the
// server's own checks keep other accounts' data out.
type apiClient struct {
	base string // "http://host:port", no trailing slash
	key  string
	hc   *http.Client
}

// apiError is a REST error answer ({"error","message"}).
type apiError struct {
	Status  int
	Code    string `json:"error"`
	Message string `json:"message"`
}

func (e *apiError) Error() string {
	return fmt.Sprintf("mailwire answered %d %s: %s", e.Status, e.Code, e.Message)
}

// errCode reports the REST error code of err ("" when it is not one).
func errCode(err error) string {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.Code
	}
	return ""
}

// Bounds on what one REST answer may bring back into the tool process.
const (
	maxJSONAnswer = 8 << 20  // a page of messages (100 × bodies)
	maxBinary     = 16 << 20 // an attachment read for its text
)

// do sends one request and decodes a 2xx JSON answer into out (nil: the
// body is dropped).
func (c *apiClient) do(ctx context.Context, method, path string, q url.Values, body, out any) error {
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("BUG: cannot encode a request body: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("cannot build a request to %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach the mailwire server: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxJSONAnswer+1))
	if err != nil {
		return fmt.Errorf("cannot read the answer to %s %s: %w", method, path, err)
	}
	if resp.StatusCode/100 != 2 {
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(data, ae) != nil || ae.Code == "" {
			ae.Code, ae.Message = "http_"+fmt.Sprint(resp.StatusCode), strings.TrimSpace(string(data[:min(len(data), 200)]))
		}
		return ae
	}
	if len(data) > maxJSONAnswer {
		return fmt.Errorf("the answer to %s %s is larger than %d bytes", method, path, maxJSONAnswer)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("cannot decode the answer to %s %s: %w", method, path, err)
	}
	return nil
}

// raw GETs a binary resource: its bytes (at most limit; truncated says
// there was more) and content type.
func (c *apiClient) raw(ctx context.Context, path string, limit int) (data []byte, ctype string, truncated bool, err error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return nil, "", false, fmt.Errorf("cannot build a request to %s: %w", path, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, "", false, fmt.Errorf("cannot reach the mailwire server: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		ae := &apiError{Status: resp.StatusCode}
		if json.Unmarshal(b, ae) != nil || ae.Code == "" {
			ae.Code = "http_" + fmt.Sprint(resp.StatusCode)
		}
		return nil, "", false, ae
	}
	data, err = io.ReadAll(io.LimitReader(resp.Body, int64(limit)+1))
	if err != nil {
		return nil, "", false, fmt.Errorf("cannot read %s: %w", path, err)
	}
	if len(data) > limit {
		data, truncated = data[:limit], true
	}
	return data, resp.Header.Get("Content-Type"), truncated, nil
}

// newHTTPClient is the tools' HTTP client: no redirects followed (a key
// is never sent elsewhere), a deadline past the longest held pull.
func newHTTPClient(longest time.Duration) *http.Client {
	return &http.Client{
		Timeout: longest + 30*time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}
