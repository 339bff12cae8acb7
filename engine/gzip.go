package engine

import (
	"bytes"
	"compress/gzip"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

// gzipMin is the smallest JSON answer worth compressing (below it the
// gzip header and the CPU cost more than they save).
const gzipMin = 1024

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// acceptsGzip reads Accept-Encoding (RFC 9110 §12.5.3): gzip (or x-gzip,
// or *) with a q-value above 0.
func acceptsGzip(h string) bool {
	if h == "" {
		return false
	}
	star := false
	for _, part := range strings.Split(h, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		q := 1.0
		for _, p := range strings.Split(params, ";") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(p), "q="); ok {
				if f, err := strconv.ParseFloat(v, 64); err == nil {
					q = f
				}
			}
		}
		switch coding {
		case "gzip", "x-gzip":
			return q > 0
		case "*":
			star = q > 0
		}
	}
	return star
}

// compressJSON gzips a JSON answer body for w when its client accepts
// gzip and the body is large enough; it sets the headers that go with it.
// It returns the body to send.
func compressJSON(w http.ResponseWriter, body []byte) []byte {
	sw, ok := w.(*statusWriter)
	if !ok || len(body) < gzipMin {
		return body
	}
	w.Header().Add("Vary", "Accept-Encoding")
	if !sw.gzipOK {
		return body
	}
	var out bytes.Buffer
	out.Grow(len(body) / 4)
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&out)
	_, err := zw.Write(body)
	if err == nil {
		err = zw.Close()
	}
	gzipWriters.Put(zw)
	if err != nil {
		return body
	}
	w.Header().Set("Content-Encoding", "gzip")
	return out.Bytes()
}
