package pdftext

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"unicode/utf8"

	"github.com/ledongthuc/pdf"
)

// Child makes the process the extraction child when it was started as
// one (the environment says so): it extracts and exits. Otherwise it
// returns at once. Call it first in main and in TestMain.
func Child() {
	if os.Getenv(childEnv) != "1" || len(os.Args) < 2 || os.Args[1] != ChildCommand {
		return
	}
	os.Exit(runChild(os.Args[2:], os.Stdin, os.Stdout, os.Stderr))
}

func runChild(args []string, in io.Reader, out, errOut io.Writer) int {
	fs := flag.NewFlagSet(ChildCommand, flag.ContinueOnError)
	fs.SetOutput(errOut)
	maxOutput := fs.Int("max-output", 1<<20, "")
	maxPages := fs.Int("max-pages", 200, "")
	maxMemory := fs.Uint64("max-memory", 256<<20, "")
	cpu := fs.Uint64("cpu", 5, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	// Before the input is touched. RLIMIT_CPU's hard limit is SIGKILL
	// (Go ignores the soft limit's SIGXCPU, so both are the same).
	if !raceEnabled { // the race detector's shadow memory counts as data
		_ = syscall.Setrlimit(syscall.RLIMIT_DATA, &syscall.Rlimit{Cur: *maxMemory, Max: *maxMemory})
	}
	_ = syscall.Setrlimit(syscall.RLIMIT_CPU, &syscall.Rlimit{Cur: *cpu, Max: *cpu})
	data, err := io.ReadAll(in)
	if err != nil {
		fmt.Fprintln(errOut, "cannot read the PDF:", err)
		return 2
	}
	text, truncated, err := extract(data, *maxPages, *maxOutput)
	if err != nil {
		fmt.Fprintln(errOut, err)
		return 3
	}
	_, _ = io.WriteString(out, text)
	if truncated {
		_, _ = io.WriteString(out, truncatedMark)
	}
	return 0
}

// extract reads the text of up to maxPages pages, stopping past
// maxOutput bytes. The parser panics on some malformed files; that is
// an error here.
func extract(data []byte, maxPages, maxOutput int) (text string, truncated bool, err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("malformed PDF: %v", v)
		}
	}()
	if bytes.HasPrefix(data, []byte("%PDF-2.")) {
		// The parser knows headers up to 1.7; a 2.0 file's syntax is the
		// same as far as text goes.
		data = append([]byte("%PDF-1.7"), data[len("%PDF-2.0"):]...)
	}
	r, err := pdf.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		return "", false, fmt.Errorf("not a readable PDF: %v", err)
	}
	n := r.NumPage() // from the file: hostile ones claim 2^31 pages
	if n > maxPages {
		n, truncated = maxPages, true
	}
	var b strings.Builder
	for i := 1; i <= n; i++ {
		p := r.Page(i)
		if p.V.IsNull() {
			continue
		}
		// nil fonts: each page decodes with its own (a shared map would
		// take the first font of a name for every page).
		t, err := p.GetPlainText(nil)
		if err != nil {
			continue // keep the other pages
		}
		b.WriteString(strings.TrimSpace(t))
		if b.Len() > maxOutput {
			truncated = true
			break
		}
		if i < n {
			b.WriteByte('\n')
		}
	}
	s := b.String()
	if len(s) > maxOutput {
		s, truncated = cutUTF8(s, maxOutput), true
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s, truncated, nil
}
