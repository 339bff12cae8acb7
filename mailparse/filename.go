package mailparse

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// extByType gives the extension for a nameless attachment. It is a fixed table rather than
// mime.ExtensionsByType, whose answer depends on the machine's mime.types files.
var extByType = map[string]string{
	"application/gzip":            ".gz",
	"application/ics":             ".ics",
	"application/json":            ".json",
	"application/msword":          ".doc",
	"application/octet-stream":    ".bin",
	"application/pdf":             ".pdf",
	"application/pgp-signature":   ".asc",
	"application/pkcs7-mime":      ".p7m",
	"application/pkcs7-signature": ".p7s",
	"application/rtf":             ".rtf",
	"application/vnd.ms-excel":    ".xls",
	"application/vnd.openxmlformats-officedocument.presentationml.presentation": ".pptx",
	"application/vnd.openxmlformats-officedocument.spreadsheetml.sheet":         ".xlsx",
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document":   ".docx",
	"application/x-pkcs7-signature":                                             ".p7s",
	"application/xml":                                                           ".xml",
	"application/zip":                                                           ".zip",
	"audio/mpeg":                                                                ".mp3",
	"image/bmp":                                                                 ".bmp",
	"image/gif":                                                                 ".gif",
	"image/heic":                                                                ".heic",
	"image/jpeg":                                                                ".jpg",
	"image/png":                                                                 ".png",
	"image/svg+xml":                                                             ".svg",
	"image/tiff":                                                                ".tiff",
	"image/webp":                                                                ".webp",
	"message/delivery-status":                                                   ".txt",
	"message/rfc822":                                                            ".eml",
	"text/calendar":                                                             ".ics",
	"text/csv":                                                                  ".csv",
	"text/html":                                                                 ".html",
	"text/plain":                                                                ".txt",
	"text/rfc822-headers":                                                       ".txt",
	"text/xml":                                                                  ".xml",
	"video/mp4":                                                                 ".mp4",
}

// sanitizeFilename makes name safe as the last segment of a URL path: base name only (after the
// last '/' or '\'), no control or format characters (which include the bidi overrides used to
// disguise extensions), no leading dots or surrounding blanks, valid UTF-8, at most
// maxFilenameBytes with the extension kept. An empty result becomes "attachment" plus an
// extension for ctype.
func sanitizeFilename(name, ctype string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	name = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) || unicode.Is(unicode.Cf, r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(name, ""))
	name = strings.TrimLeftFunc(name, func(r rune) bool { return r == '.' || unicode.IsSpace(r) })
	name = strings.TrimRightFunc(name, unicode.IsSpace)
	name = truncateName(name, maxFilenameBytes)
	if name == "" {
		name = "attachment" + extByType[ctype]
	}
	return name
}

// splitExt splits name into base and extension (".pdf"); a suffix longer than maxExtBytes or
// containing a blank is not an extension.
func splitExt(name string) (base, ext string) {
	i := strings.LastIndexByte(name, '.')
	if i <= 0 || len(name)-i > maxExtBytes || strings.ContainsAny(name[i:], " \t") {
		return name, ""
	}
	return name[:i], name[i:]
}

// truncateName cuts name to at most max bytes on a rune boundary, keeping its extension.
func truncateName(name string, max int) string {
	if len(name) <= max {
		return name
	}
	base, ext := splitExt(name)
	return strings.TrimRightFunc(cutUTF8(base, max-len(ext)), unicode.IsSpace) + ext
}

func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// nameSet hands out attachment names that are unique within one message.
type nameSet struct {
	used map[string]bool
	next map[string]int // the next suffix number to try for a name
}

// unique returns name, or "base (2).ext", "base (3).ext"... when an earlier attachment already
// has it. Remembering the next number per name keeps many equal names linear.
func (s *nameSet) unique(name string) string {
	if s.used == nil {
		s.used, s.next = make(map[string]bool), make(map[string]int)
	}
	cand := name
	if s.used[cand] {
		base, ext := splitExt(name)
		n := max(s.next[name], 2)
		for ; ; n++ {
			suffix := " (" + strconv.Itoa(n) + ")" + ext
			cand = cutUTF8(base, maxFilenameBytes-len(suffix)) + suffix
			if !s.used[cand] {
				break
			}
		}
		s.next[name] = n + 1
	}
	s.used[cand] = true
	return cand
}
