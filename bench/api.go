package bench

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// API is a small client of mailwire's HTTP API (spec/API.md): the admin
// routes that create accounts, the account routes that create inboxes and
// webhooks, the inbound route, and /metrics. It wraps one
// fasthttp.HostClient with every limit set.
type API struct {
	base  string
	admin string
	hc    *fasthttp.HostClient
}

// NewAPI returns a client of the server at base (http://host:port) with
// up to conns keep-alive connections.
func NewAPI(base, adminToken string, conns int) (*API, error) {
	u, err := url.Parse(base)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("cannot use server URL %q: want http://host:port", base)
	}
	return &API{
		base:  strings.TrimSuffix(base, "/"),
		admin: adminToken,
		hc: &fasthttp.HostClient{
			Addr:                u.Host,
			Name:                "mailwire-bench",
			MaxConns:            max(conns, 1),
			MaxConnWaitTimeout:  30 * time.Second,
			ReadTimeout:         60 * time.Second,
			WriteTimeout:        60 * time.Second,
			MaxIdleConnDuration: time.Second,
			MaxResponseBodySize: 64 << 20, // /metrics and lists
			// A plain dialer: fasthttp's default one caches DNS in a
			// goroutine that lives for the process.
			Dial: func(addr string) (net.Conn, error) {
				return (&net.Dialer{Timeout: 10 * time.Second}).Dial("tcp", addr)
			},
		},
	}, nil
}

// Close drops idle connections.
func (a *API) Close() { a.hc.CloseIdleConnections() }

// Base is the server's base URL.
func (a *API) Base() string { return a.base }

// do sends a JSON request and decodes a JSON answer into out; a status
// other than want is an error carrying the body.
func (a *API) do(method, path, token string, body any, want int, out any) error {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod(method)
	req.SetRequestURI(a.base + path)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(b)
	}
	if err := a.hc.Do(req, resp); err != nil {
		return fmt.Errorf("cannot %s %s: %w", method, path, err)
	}
	if resp.StatusCode() != want {
		return fmt.Errorf("%s %s: HTTP %d: %s", method, path, resp.StatusCode(), bytes.TrimSpace(resp.Body()))
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body(), out); err != nil {
			return fmt.Errorf("%s %s: cannot decode the answer: %w", method, path, err)
		}
	}
	return nil
}

// Account is an account with one API key.
type Account struct {
	ID  string `json:"id"`
	Key string `json:"apiKey"`
}

// CreateAccount creates an account (admin token).
func (a *API) CreateAccount(name string) (Account, error) {
	var acc Account
	err := a.do("POST", "/admin/v1/accounts", a.admin, map[string]string{"name": name}, 201, &acc)
	return acc, err
}

// Inbox is an inbox as the API returns it.
type Inbox struct {
	ID      string `json:"id"`
	Address string `json:"address"`
}

// CreateInbox creates an inbox in the key's account.
func (a *API) CreateInbox(key, mailbox string) (Inbox, error) {
	var in Inbox
	err := a.do("POST", "/v1/inboxes", key, map[string]string{"mailboxName": mailbox}, 201, &in)
	return in, err
}

// PutWebhook sets the account's webhook URL and returns its secret.
func (a *API) PutWebhook(key, hookURL string) (string, error) {
	var out struct{ Secret string }
	err := a.do("PUT", "/v1/webhook", key, map[string]string{"url": hookURL}, 200, &out)
	return out.Secret, err
}

// Inbound posts one JSON inbound message (body already encoded) and
// returns the HTTP status.
func (a *API) Inbound(key, inboxID string, body []byte) (int, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI(a.base + "/v1/inboxes/" + inboxID + "/inbound")
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	if err := a.hc.Do(req, resp); err != nil {
		return 0, err
	}
	return resp.StatusCode(), nil
}

// Metrics scrapes /metrics into name{labels} → value (the last sample
// of a name wins; histograms' buckets are kept under their full names).
func (a *API) Metrics() (map[string]float64, error) {
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(a.base + "/metrics")
	if err := a.hc.DoTimeout(req, resp, 10*time.Second); err != nil {
		return nil, fmt.Errorf("cannot scrape /metrics: %w", err)
	}
	if resp.StatusCode() != 200 {
		return nil, fmt.Errorf("cannot scrape /metrics: HTTP %d", resp.StatusCode())
	}
	return parseMetrics(resp.Body()), nil
}

// parseMetrics reads Prometheus text format samples.
func parseMetrics(b []byte) map[string]float64 {
	m := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i <= 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		m[line[:i]] = v
	}
	return m
}

// smtpConn is one SMTP client connection that sends message after
// message (MAIL, RCPT, DATA, then the next transaction on the same
// connection). It is used by one goroutine.
type smtpConn struct {
	c  net.Conn
	r  *bufio.Reader
	w  *bufio.Writer
	to time.Duration
}

func dialSMTP(addr string, src net.IP, timeout time.Duration) (*smtpConn, error) {
	d := net.Dialer{Timeout: timeout}
	if src != nil {
		d.LocalAddr = &net.TCPAddr{IP: src}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("cannot connect to SMTP %s: %w", addr, err)
	}
	s := &smtpConn{c: c, r: bufio.NewReader(c), w: bufio.NewWriter(c), to: timeout}
	if _, err := s.reply(220); err != nil {
		c.Close()
		return nil, err
	}
	if err := s.cmd(250, "EHLO bench.localhost"); err != nil {
		c.Close()
		return nil, err
	}
	return s, nil
}

// reply reads one (possibly multi-line) reply and checks its code.
func (s *smtpConn) reply(want int) (string, error) {
	_ = s.c.SetReadDeadline(time.Now().Add(s.to))
	var last string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			return "", fmt.Errorf("SMTP: %w", err)
		}
		last = strings.TrimRight(line, "\r\n")
		if len(last) < 4 || last[3] != '-' {
			break
		}
	}
	if len(last) < 3 || last[:3] != strconv.Itoa(want) {
		return last, fmt.Errorf("SMTP: want %d, got %q", want, last)
	}
	return last, nil
}

func (s *smtpConn) cmd(want int, line string) error {
	_ = s.c.SetWriteDeadline(time.Now().Add(s.to))
	s.w.WriteString(line)
	s.w.WriteString("\r\n")
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("SMTP: %w", err)
	}
	_, err := s.reply(want)
	return err
}

// send delivers one message (msg: CRLF lines, no dot-stuffing needed: the
// generator never starts a line with a dot) and returns once the server
// answered 250 to the data, i.e. the message is durable.
func (s *smtpConn) send(from, to string, msg []byte) error {
	if err := s.cmd(250, "MAIL FROM:<"+from+">"); err != nil {
		return err
	}
	if err := s.cmd(250, "RCPT TO:<"+to+">"); err != nil {
		return err
	}
	if err := s.cmd(354, "DATA"); err != nil {
		return err
	}
	_ = s.c.SetWriteDeadline(time.Now().Add(s.to))
	s.w.Write(msg)
	s.w.WriteString("\r\n.\r\n")
	if err := s.w.Flush(); err != nil {
		return fmt.Errorf("SMTP: %w", err)
	}
	_, err := s.reply(250)
	return err
}

func (s *smtpConn) close() {
	_ = s.c.SetDeadline(time.Now().Add(time.Second))
	_, _ = s.w.WriteString("QUIT\r\n")
	_ = s.w.Flush()
	_ = s.c.Close()
}
