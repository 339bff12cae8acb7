package pdftext

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailwire/mailwire/internal/leakcheck"
	"github.com/mailwire/mailwire/internal/pdftext/pdftest"
)

// The test binary is also the child: Extract re-executes it.
func TestMain(m *testing.M) {
	Child()
	leakcheck.Main(m)
}

func newExtractor(t *testing.T, lim Limits) *Extractor {
	t.Helper()
	e, err := New("", lim)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestExtract(t *testing.T) {
	e := newExtractor(t, Limits{})
	r, err := e.Extract(context.Background(), pdftest.Make("Invoice 4711 from mailwire\nTotal due: 123.45 EUR", "Second page (thanks)"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Invoice 4711 from mailwire", "Total due: 123.45 EUR", "Second page (thanks)"} {
		if !strings.Contains(r.Text, want) {
			t.Errorf("text %q lacks %q", r.Text, want)
		}
	}
	if r.Truncated {
		t.Errorf("truncated")
	}
	// A PDF 2.0 header is read as 1.7.
	pdf2 := pdftest.Make("Version two")
	copy(pdf2, "%PDF-2.0")
	if r, err := e.Extract(context.Background(), pdf2); err != nil || !strings.Contains(r.Text, "Version two") {
		t.Errorf("PDF 2.0: %q %v", r.Text, err)
	}
}

// Every bound holds: output, pages, input size, garbage, time.
func TestExtractBounds(t *testing.T) {
	e := newExtractor(t, Limits{MaxOutput: 40, MaxPages: 2, MaxInput: 64 << 10, Timeout: 3 * time.Second, CPUSeconds: 2})
	r, err := e.Extract(context.Background(), pdftest.Make(strings.Repeat("long line of text ", 10)))
	if err != nil || !r.Truncated || len(r.Text) > 40 || !strings.HasPrefix(r.Text, "long line") {
		t.Errorf("output cap: %q %v %v", r.Text, r.Truncated, err)
	}
	r, err = e.Extract(context.Background(), pdftest.Make("one", "two", "three"))
	if err != nil || !r.Truncated || strings.Contains(r.Text, "three") {
		t.Errorf("page cap: %q %v %v", r.Text, r.Truncated, err)
	}
	if _, err := e.Extract(context.Background(), make([]byte, 65<<10)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("too large: %v", err)
	}
	if _, err := e.Extract(context.Background(), []byte("not a pdf at all")); !errors.Is(err, ErrFailed) {
		t.Errorf("garbage: %v", err)
	}
	// A page tree that contains itself: the parser loops; the child is
	// killed (CPU limit or timeout), the caller gets an error in bounded
	// time.
	start := time.Now()
	_, err = e.Extract(context.Background(), pdftest.PageTreeCycle())
	if err == nil {
		t.Errorf("a page-tree cycle gave no error")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the cycle took %s", d)
	}
	t.Logf("page-tree cycle: %v after %s", err, time.Since(start).Round(time.Millisecond))
}
