// Package pdftest makes small PDF files for tests: one page per line
// group, Helvetica text, a correct cross-reference table.
package pdftest

import (
	"bytes"
	"fmt"
	"strings"
)

// Make returns a PDF whose pages show the given texts (one page each;
// a text's lines are drawn one under the other). Only printable ASCII
// is drawn as given.
func Make(pages ...string) []byte {
	return build(pages, false)
}

// PageTreeCycle returns a PDF whose page tree contains itself: a parser
// that follows it naively never ends.
func PageTreeCycle() []byte {
	return build([]string{"cycle"}, true)
}

func build(pages []string, cycle bool) []byte {
	var objs []string
	// 1: catalog, 2: pages, 3: font, then per page a page and a content
	// stream.
	objs = append(objs, "<< /Type /Catalog /Pages 2 0 R >>")
	var kids []string
	for i := range pages {
		kids = append(kids, fmt.Sprintf("%d 0 R", 4+2*i))
	}
	if cycle {
		objs = append(objs, "<< /Type /Pages /Kids [2 0 R] /Count 1 >>")
	} else {
		objs = append(objs, fmt.Sprintf("<< /Type /Pages /Kids [%s] /Count %d >>", strings.Join(kids, " "), len(pages)))
	}
	objs = append(objs, "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
	for i, text := range pages {
		var content strings.Builder
		content.WriteString("BT /F1 12 Tf 72 720 Td 14 TL\n")
		for j, line := range strings.Split(text, "\n") {
			if j > 0 {
				content.WriteString("T*\n")
			}
			fmt.Fprintf(&content, "(%s) Tj\n", escape(line))
		}
		content.WriteString("ET")
		objs = append(objs,
			fmt.Sprintf("<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>", 5+2*i),
			fmt.Sprintf("<< /Length %d >>\nstream\n%s\nendstream", content.Len(), content.String()))
	}
	var b bytes.Buffer
	b.WriteString("%PDF-1.4\n")
	offsets := make([]int, len(objs))
	for i, o := range objs {
		offsets[i] = b.Len()
		fmt.Fprintf(&b, "%d 0 obj\n%s\nendobj\n", i+1, o)
	}
	xref := b.Len()
	fmt.Fprintf(&b, "xref\n0 %d\n0000000000 65535 f \n", len(objs)+1)
	for _, off := range offsets {
		fmt.Fprintf(&b, "%010d 00000 n \n", off)
	}
	fmt.Fprintf(&b, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n", len(objs)+1, xref)
	return b.Bytes()
}

func escape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `(`, `\(`, `)`, `\)`)
	return r.Replace(s)
}
