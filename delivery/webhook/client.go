package webhook

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mailwire/mailwire/internal/confcheck"
)

// Config sets the limits of a Client. A zero or negative field takes its
// default (DefaultConfig). The fields a flag sets name it (CONFIG.md), as
// Validate's messages do.
type Config struct {
	// Timeout bounds one whole attempt: waiting for a connection, resolving,
	// connecting, writing the request, reading the status, the headers and
	// the part of the body that is read (--webhook-timeout). Default
	// DefaultTimeout (15 s).
	Timeout time.Duration
	// MaxConnsPerHost caps concurrent connections to one host (host:port and
	// scheme). Default DefaultMaxConnsPerHost (64).
	MaxConnsPerHost int
	// MaxConnWait is how long an attempt waits for a free connection when
	// the host already has MaxConnsPerHost; the wait counts against Timeout.
	// Default: Timeout.
	MaxConnWait time.Duration
	// MaxResponseBody is the most bytes of a response body read, in bytes.
	// Reading stops there and the connection is closed; a longer body is cut
	// off, which is not an error. Default DefaultMaxResponseBody (64 KiB).
	MaxResponseBody int
	// IdleConnTimeout closes keep-alive connections idle this long.
	// Default DefaultIdleConnTimeout (4 s).
	IdleConnTimeout time.Duration
	// AllowPrivate lifts the SSRF address and name checks (local development
	// and tests; --webhook-allow-private). Zero value: they apply. Scheme and userinfo checks always
	// apply.
	AllowPrivate bool
	// Resolver resolves receiver host names at connect time.
	// nil: net.DefaultResolver.
	Resolver Resolver
	// UserAgent is the User-Agent header. Default DefaultUserAgent.
	UserAgent string
}

// DefaultConfig is a Client's defaults (the limits.go constants); its
// UserAgent is left empty for the node to name its version
// (DefaultUserAgent otherwise).
func DefaultConfig() Config {
	return Config{
		Timeout:         DefaultTimeout,
		MaxConnsPerHost: DefaultMaxConnsPerHost,
		MaxResponseBody: DefaultMaxResponseBody,
		IdleConnTimeout: DefaultIdleConnTimeout,
	}
}

// Validate reports every problem of the settings a flag sets at once,
// each by its flag.
func (cfg Config) Validate() error {
	var p confcheck.Problems
	p.Check(cfg.Timeout >= 100*time.Millisecond, "--webhook-timeout must be at least 100ms")
	return p.Err()
}

func (cfg Config) withDefaults() Config {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxConnsPerHost <= 0 {
		cfg.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if cfg.MaxConnWait <= 0 {
		cfg.MaxConnWait = cfg.Timeout
	}
	if cfg.MaxResponseBody <= 0 {
		cfg.MaxResponseBody = DefaultMaxResponseBody
	}
	if cfg.IdleConnTimeout <= 0 {
		cfg.IdleConnTimeout = DefaultIdleConnTimeout
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = DefaultUserAgent
	}
	return cfg
}

// Result is the outcome of one attempt, as the attempt log records it.
type Result struct {
	// Status is the HTTP status received, 0 when no status line was.
	Status int
	// Duration is the whole attempt's time.
	Duration time.Duration
	// Body holds the first bytes of the response body, at most 1 KiB.
	Body []byte
	// Err is nil exactly when the receiver answered 2xx (and its body, up to
	// MaxResponseBody, was read without error). Its message is short and
	// fit for a log line: "http 503", "timeout after 15s", "connection
	// refused", "address 127.0.0.1 is not allowed (loopback)". It unwraps to
	// the underlying error when there is one (ErrInvalidURL,
	// ErrForbiddenAddress, syscall errors, fasthttp errors).
	Err error
}

// Client posts signed webhook requests. It is safe for concurrent use.
//
// It never follows redirects, never retries (the delivery schedule does),
// ignores proxy environment variables, connects only through the SSRF
// Dialer, bounds every attempt by Config.Timeout however slowly the receiver
// answers, and reads at most Config.MaxResponseBody of a response body.
type Client struct {
	cfg Config
	hc  *fasthttp.Client
}

// NewClient returns a Client with cfg's limits (defaults filled in).
func NewClient(cfg Config) *Client {
	cfg = cfg.withDefaults()
	d := &Dialer{AllowPrivate: cfg.AllowPrivate, Resolver: cfg.Resolver, Timeout: cfg.Timeout}
	hc := &fasthttp.Client{
		// DialTimeout, not Dial: fasthttp passes the attempt's remaining time
		// only to DialTimeout. fasthttp never reads HTTP_PROXY and friends;
		// proxies exist only through a Dial from fasthttpproxy.
		DialTimeout: d.DialTimeout,

		Name:                     cfg.UserAgent,
		NoDefaultUserAgentHeader: true,
		TLSConfig:                &tls.Config{MinVersion: tls.VersionTLS12},

		MaxConnsPerHost:     cfg.MaxConnsPerHost,
		MaxConnWaitTimeout:  cfg.MaxConnWait,
		MaxIdleConnDuration: cfg.IdleConnTimeout,
		MaxConnDuration:     maxConnLifetime,
		ConnPoolStrategy:    fasthttp.LIFO, // reuse the warmest connection; idle ones age out

		// fasthttp would not retry a POST anyway; say so explicitly. A retry
		// is the delivery schedule's decision, with a fresh signature.
		MaxIdemponentCallAttempts: 1,
		RetryIfErr:                func(*fasthttp.Request, int, error) (bool, bool) { return false, false },

		ReadBufferSize:  maxResponseHeaderBytes,
		WriteBufferSize: requestWriteBuffer,
		// The attempt's deadline (DoDeadline) is shorter than these; they
		// bound any path where fasthttp would use its own.
		ReadTimeout:  cfg.Timeout,
		WriteTimeout: cfg.Timeout,

		// Streaming lets Post read a bounded prefix of the body and then drop
		// the connection; fasthttp ignores MaxResponseBodySize when
		// streaming, and would fail the whole response with ErrBodyTooLarge
		// when not. It is set anyway so no path is unbounded.
		StreamResponseBody:  true,
		MaxResponseBodySize: cfg.MaxResponseBody,

		// Post the path exactly as the user configured it.
		DisablePathNormalizing: true,

		ConfigureClient: func(h *fasthttp.HostClient) error {
			h.SecureErrorLogMessage = true // no response bytes in fasthttp's error texts
			return nil
		},
	}
	return &Client{cfg: cfg, hc: hc}
}

// Close closes idle connections. In-flight Posts are not interrupted; the
// Client stays usable (a later Post dials afresh). fasthttp's background
// cleaners exit within IdleConnTimeout (at least 1 s) once no connection is
// left.
func (c *Client) Close() {
	c.hc.CloseIdleConnections()
}

// Post sends body to url with h's headers and reports the attempt. body must
// not change until Post returns. url is checked again as ValidateURL would
// (without resolving: the Dialer checks the addresses it connects to), so a
// URL saved under older rules cannot bypass newer ones.
func (c *Client) Post(url string, h Headers, body []byte) Result {
	start := time.Now()
	res := c.post(start, url, h, body)
	res.Duration = time.Since(start)
	return res
}

func (c *Client) post(start time.Time, rawURL string, h Headers, body []byte) Result {
	u, _, err := checkURLText(rawURL, c.cfg.AllowPrivate)
	if err != nil {
		return Result{Err: err}
	}

	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)

	req.SetRequestURI(u.String())
	req.Header.SetMethod(fasthttp.MethodPost)
	SetHeaders(req, h)
	req.Header.SetUserAgent(c.cfg.UserAgent)
	req.SetBodyRaw(body)

	deadline := start.Add(c.cfg.Timeout)
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		return Result{Err: &attemptError{msg: c.describe(err, deadline), err: err}}
	}
	res := Result{Status: resp.StatusCode()}
	res.Body, err = c.readBody(resp)
	if err != nil {
		res.Err = &attemptError{msg: "cannot read response body: " + c.describe(err, deadline), err: err}
		return res
	}
	if res.Status < 200 || res.Status > 299 {
		res.Err = &attemptError{msg: statusMessage(res.Status, resp)}
	}
	return res
}

// readBody reads at most MaxResponseBody bytes of the streamed body, keeps
// the first logBodyBytes, and closes the stream. fasthttp returns the
// connection to the pool only when the body was read to its end; otherwise
// it closes it, which is what ends a huge or endless body.
func (c *Client) readBody(resp *fasthttp.Response) ([]byte, error) {
	stream := resp.BodyStream()
	if stream == nil {
		return nil, nil // no body (204, 304) or nothing streamed
	}
	lr := &io.LimitedReader{R: stream, N: int64(c.cfg.MaxResponseBody)}
	keep := make([]byte, 0, min(logBodyBytes, c.cfg.MaxResponseBody))
	var err error
	for len(keep) < cap(keep) {
		var n int
		n, err = lr.Read(keep[len(keep):cap(keep)])
		keep = keep[:len(keep)+n]
		if err != nil {
			break
		}
	}
	if err == nil {
		_, err = io.Copy(io.Discard, lr) // nil at the end of the body or of the limit
	}
	if err == io.EOF {
		err = nil
	}
	if err != nil {
		if rc, ok := stream.(fasthttp.ReadCloserWithError); ok {
			_ = rc.CloseWithError(err)
		}
	}
	_ = resp.CloseBodyStream()
	if len(keep) == 0 {
		keep = nil
	}
	return keep, err
}

func statusMessage(status int, resp *fasthttp.Response) string {
	msg := "http " + strconv.Itoa(status)
	if status >= 300 && status <= 399 {
		loc := string(resp.Header.Peek(fasthttp.HeaderLocation))
		if len(loc) > 200 {
			loc = loc[:200] + "..."
		}
		if loc != "" {
			return msg + " (redirect to " + loc + " not followed)"
		}
		return msg + " (redirects are not followed)"
	}
	return msg
}

// attemptError is a failed attempt: a short message for the attempt log and
// the error behind it, if any.
type attemptError struct {
	msg string
	err error
}

func (e *attemptError) Error() string { return e.msg }
func (e *attemptError) Unwrap() error { return e.err }

// describe turns a transport error into a short message. An error at or
// after the attempt's deadline is reported as the timeout it is: fasthttp's
// ErrBrokenChunk and ErrSmallBuffer hide their cause from errors.Is (they
// embed it without an Unwrap method), so the deadline is the reliable sign.
// For the same reason the errno checks fall back to the message text.
func (c *Client) describe(err error, deadline time.Time) string {
	var (
		forbidden *ForbiddenAddressError
		dnsErr    *net.DNSError
		small     *fasthttp.ErrSmallBuffer
	)
	switch {
	case errors.As(err, &forbidden):
		return forbidden.Error()
	case errors.Is(err, ErrInvalidURL):
		return err.Error()
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return "cannot resolve " + dnsErr.Name + ": no such host"
	case isTimeout(err) || !time.Now().Before(deadline):
		return "timeout after " + c.cfg.Timeout.String()
	case errors.Is(err, fasthttp.ErrNoFreeConns):
		return "no free connection to the host within " + c.cfg.MaxConnWait.String()
	case causeIs(err, syscall.ECONNREFUSED):
		return "connection refused"
	case causeIs(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, fasthttp.ErrConnectionClosed), errors.Is(err, io.EOF), causeIs(err, syscall.EPIPE):
		// fasthttp reports a reset before the first response byte as a close.
		return "connection closed or reset before a response"
	case causeIs(err, io.ErrUnexpectedEOF):
		return "connection closed before the end of the response"
	case errors.As(err, &small):
		return "response headers larger than " + strconv.Itoa(maxResponseHeaderBytes>>10) + " KiB"
	case errors.As(err, &dnsErr):
		return "cannot resolve " + dnsErr.Name + ": " + dnsErr.Err
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return msg
}

func causeIs(err, target error) bool {
	return errors.Is(err, target) || strings.Contains(err.Error(), target.Error())
}

func isTimeout(err error) bool {
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrTLSHandshakeTimeout) ||
		errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
