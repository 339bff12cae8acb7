// Package pdftext extracts the plain text of PDF attachments, bounded in
// input and output size, pages, time, memory and CPU.
//
// The parser (github.com/ledongthuc/pdf, pure Go) has no context and a
// hostile file can make it loop or allocate without end; a goroutine
// cannot be stopped and a Go "out of memory" cannot be recovered. So the
// extraction runs in a child process: the running binary re-executed
// with the hidden subcommand ChildCommand (see Child), which caps its own
// data segment and CPU time with setrlimit before reading the PDF from
// stdin, and writes the text to stdout. The parent kills it at the
// timeout, caps what it reads back, and bounds how many run at once.
//
// Binaries that use an Extractor must call Child first thing in main (a
// test binary: in TestMain), so that the re-executed process becomes
// the child.
//
// An Extractor is safe for concurrent use.
package pdftext

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// ChildCommand is the hidden subcommand (the first argument) of the
// re-executed binary; childEnv marks its environment.
const (
	ChildCommand = "__pdf-text"
	childEnv     = "MAILWIRE_PDFTEXT_CHILD"
)

// Errors of Extract.
var (
	ErrTooLarge = errors.New("the PDF is larger than the extraction limit")
	ErrTimeout  = errors.New("text extraction took too long")
	ErrBusy     = errors.New("too many text extractions in progress")
	ErrFailed   = errors.New("the PDF's text could not be extracted")
)

// Limits bound one extraction.
type Limits struct {
	// MaxInput is the largest PDF accepted (bytes). Default 10 MiB.
	MaxInput int
	// MaxOutput is the most text returned (bytes; cut on a UTF-8
	// boundary). Default 1 MiB.
	MaxOutput int
	// MaxPages is the most pages read. Default 200.
	MaxPages int
	// Timeout ends the child (SIGKILL). Default 10 s.
	Timeout time.Duration
	// MaxMemory is the child's RLIMIT_DATA (bytes). Default 256 MiB: Go's
	// runtime needs more than 64; RLIMIT_AS cannot be used with Go, which
	// reserves large address ranges it never touches.
	MaxMemory uint64
	// CPUSeconds is the child's RLIMIT_CPU. Default 5.
	CPUSeconds uint64
	// Concurrent is how many children may run at once. Default 2.
	Concurrent int
}

func (l Limits) withDefaults() Limits {
	if l.MaxInput <= 0 {
		l.MaxInput = 10 << 20
	}
	if l.MaxOutput <= 0 {
		l.MaxOutput = 1 << 20
	}
	if l.MaxPages <= 0 {
		l.MaxPages = 200
	}
	if l.Timeout <= 0 {
		l.Timeout = 10 * time.Second
	}
	if l.MaxMemory == 0 {
		l.MaxMemory = 256 << 20
	}
	if l.CPUSeconds == 0 {
		l.CPUSeconds = 5
	}
	if l.Concurrent <= 0 {
		l.Concurrent = 2
	}
	return l
}

// Extractor runs extractions in children of one executable.
type Extractor struct {
	exe string
	lim Limits
	sem chan struct{}
}

// New returns an Extractor that re-executes exe ("" means the running
// binary, os.Executable).
func New(exe string, lim Limits) (*Extractor, error) {
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("cannot find the running binary for PDF text extraction: %w", err)
		}
	}
	lim = lim.withDefaults()
	return &Extractor{exe: exe, lim: lim, sem: make(chan struct{}, lim.Concurrent)}, nil
}

// MaxInput is the largest PDF Extract accepts (bytes).
func (e *Extractor) MaxInput() int { return e.lim.MaxInput }

// Result is an extraction's text.
type Result struct {
	Text string
	// Truncated: the text was cut at MaxOutput, or pages past MaxPages
	// were not read.
	Truncated bool
}

// Extract returns the text of the PDF data.
func (e *Extractor) Extract(ctx context.Context, data []byte) (Result, error) {
	if len(data) > e.lim.MaxInput {
		return Result{}, fmt.Errorf("%w (%d bytes, at most %d)", ErrTooLarge, len(data), e.lim.MaxInput)
	}
	select {
	case e.sem <- struct{}{}:
		defer func() { <-e.sem }()
	case <-ctx.Done():
		return Result{}, fmt.Errorf("%w: %w", ErrBusy, ctx.Err())
	}
	ctx, cancel := context.WithTimeout(ctx, e.lim.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, e.exe, ChildCommand,
		"-max-output", strconv.Itoa(e.lim.MaxOutput), "-max-pages", strconv.Itoa(e.lim.MaxPages),
		"-max-memory", strconv.FormatUint(e.lim.MaxMemory, 10), "-cpu", strconv.FormatUint(e.lim.CPUSeconds, 10))
	// Nothing inherited; the child's GC works to stay under its limit.
	cmd.Env = []string{childEnv + "=1", "GOMEMLIMIT=" + strconv.FormatUint(e.lim.MaxMemory*3/4, 10), "GOMAXPROCS=1"}
	cmd.Stdin = bytes.NewReader(data)
	var out, stderr capped
	out.max, stderr.max = e.lim.MaxOutput+len(truncatedMark)+1, 1024
	cmd.Stdout, cmd.Stderr = &out, &stderr
	cmd.WaitDelay = time.Second
	err := cmd.Run()
	switch {
	case ctx.Err() != nil && errors.Is(ctx.Err(), context.DeadlineExceeded):
		return Result{}, fmt.Errorf("%w (%s)", ErrTimeout, e.lim.Timeout)
	case ctx.Err() != nil:
		return Result{}, ctx.Err()
	case err != nil:
		why := strings.TrimSpace(firstLine(stderr.b.String()))
		if why == "" {
			why = err.Error()
		}
		return Result{}, fmt.Errorf("%w: %s", ErrFailed, why)
	}
	text := out.b.String()
	r := Result{Text: text}
	if t, ok := strings.CutSuffix(text, truncatedMark); ok {
		r.Text, r.Truncated = t, true
	}
	if len(r.Text) > e.lim.MaxOutput {
		r.Text, r.Truncated = cutUTF8(r.Text, e.lim.MaxOutput), true
	}
	return r, nil
}

// truncatedMark ends the child's output when it cut the text.
const truncatedMark = "\x00truncated"

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// capped keeps the first max bytes written to it and drops the rest (the
// child never blocks on a full pipe).
type capped struct {
	b   bytes.Buffer
	max int
}

func (c *capped) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); room > 0 {
		c.b.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

// cutUTF8 cuts s to at most n bytes on a rune boundary.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && n < len(s) && s[n]&0xc0 == 0x80 {
		n--
	}
	return s[:n]
}
