package mailparse

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/jhillyerd/enmime/v2"
)

// sameAsEnmime reports how decodeLeaf's part differs from what enmime makes of the whole leaf
// ("" when it does not, or when decodeLeaf declines), and whether decodeLeaf took it.
func sameAsEnmime(data []byte) (diff string, took bool) {
	_, bodyStart := splitHeader(data)
	got, ok := decodeLeaf(data, bodyStart)
	if !ok {
		return "", false
	}
	want, err := readParts(enmimeParser, data)
	if err != nil {
		return fmt.Sprintf("enmime fails (%v), decodeLeaf does not", err), true
	}
	var d []string
	check := func(field string, g, w any) {
		if !reflect.DeepEqual(g, w) {
			d = append(d, fmt.Sprintf("%s: got %q, enmime %q", field, g, w))
		}
	}
	check("Header", got.Header, want.Header)
	check("ContentType", got.ContentType, want.ContentType)
	check("ContentTypeParams", got.ContentTypeParams, want.ContentTypeParams)
	check("Disposition", got.Disposition, want.Disposition)
	check("FileName", got.FileName, want.FileName)
	check("Charset", got.Charset, want.Charset)
	check("OrigCharset", got.OrigCharset, want.OrigCharset)
	check("ContentID", got.ContentID, want.ContentID)
	check("Boundary", got.Boundary, want.Boundary)
	check("Errors", partErrors(got), partErrors(want))
	if !bytes.Equal(got.Content, want.Content) {
		d = append(d, fmt.Sprintf("Content: got %q, enmime %q", clip(got.Content), clip(want.Content)))
	}
	return strings.Join(d, "; "), true
}

func partErrors(p *enmime.Part) []string {
	out := []string{}
	for _, e := range p.Errors {
		out = append(out, fmt.Sprintf("%s|%s|%v", e.Name, e.Detail, e.Severe))
	}
	return out
}

func clip(b []byte) []byte {
	if len(b) > 200 {
		return b[:200]
	}
	return b
}

// leafParts returns the leaves of raw as Parse splits them.
func leafParts(raw []byte) [][]byte {
	hdrLen, bodyStart := splitHeader(raw)
	if containsFold(raw[:hdrLen], "boundary") {
		if hp, err := readParts(enmimeParser, raw[:bodyStart]); err == nil && strings.HasPrefix(hp.ContentType, "multipart/") && hp.Boundary != "" {
			var out [][]byte
			s := newMultipartSplitter(raw[bodyStart:], hp.Boundary)
			for {
				c, ok := s.next()
				if !ok {
					return out
				}
				out = append(out, leafParts(c)...)
			}
		}
	}
	return [][]byte{raw}
}

// decodeLeafCases are leaves on the edges of what decodeLeaf takes.
func decodeLeafCases() [][]byte {
	var out [][]byte
	add := func(header, body string) { out = append(out, []byte(header+"\r\n"+body)) }
	types := []string{"", "Content-Type: text/plain\r\n", "Content-Type: text/plain; charset=UTF-8\r\n",
		"Content-Type: text/html; charset=utf8\r\n", "Content-Type: text/plain; charset=iso-8859-1\r\n",
		"Content-Type: application/pdf; name=a.pdf\r\n", "Content-Type: image/png\r\nContent-ID: <x@y>\r\n",
		"Content-Type: multipart/mixed\r\n", "Content-Type: text/plain; charset=\"charset=utf-8\"\r\n",
		"Content-Type: text/plain; charset=unknown-8bit\r\n", "Content-Type: ;;\r\n",
		"Content-Disposition: attachment; filename=\"r\xe9sum\xe9.txt\"\r\n"}
	b64 := []string{"", "\r\n", "aGVsbG8gd29ybGQ=\r\n", "aGVs\r\nbG8g\r\nd29y\r\nbGQ\r\n", "aGVsbG8=d29ybGQ=\r\n",
		"QQ", "QUI", "QUJD", "QUJDR", "Q Q = = \t", "QUJD!RA==", "QUJD\xc1RA==", "QUJD\x00RA", "-_-_",
		strings.Repeat("QUJDRA", 3000), strings.Repeat("QUJDR\r\n", 1000) + "Rg"}
	qp := []string{"", "plain\r\n", "caf=C3=A9\r\n", "caf=c3=a9\n", "soft=\r\nbreak\r\n", "soft=\nbreak", "end=",
		"end=\r", "end=\n", "bad=ZZ\r\n", "bad=\x00", "sp= \r\nx", "trailing   \r\nws\t\r\n", "tab\there\r\n",
		"bare\rcr\r\n", "8bit \xc3\xa9\r\n", "ctl\x01\r\n", "==41\r\n", "=4\r\n", "x=\r\n",
		strings.Repeat("a", 999) + "\r\n", strings.Repeat("a", 1000) + "\r\n", strings.Repeat("a", 1001) + "\r\n",
		strings.Repeat("a", 998) + "=41\r\n", strings.Repeat("a", 1021) + "=41\r\n", strings.Repeat("a", 1030) + "\r\n",
		strings.Repeat("line of text =E2=82=AC with euros=\r\n", 500),
		// Lines enmime's cleaner breaks, in many lengths (its lost-byte quirk depends on where
		// the breaks fall in the decoder's reads).
		strings.Repeat("a", 5000), strings.Repeat("ab=C3=A9 \xc3\xa9\x01= ", 1000), qpLongLines(),
		qpLostByte()}
	for _, t := range types {
		for _, cte := range []string{"base64", "BASE64", " base64 "} {
			for _, b := range b64 {
				add(t+"Content-Transfer-Encoding: "+cte+"\r\n", b)
			}
		}
		for _, cte := range []string{"quoted-printable", "Quoted-Printable"} {
			for _, b := range qp {
				add(t+"Content-Transfer-Encoding: "+cte+"\r\n", b)
			}
		}
		for _, cte := range []string{"", "Content-Transfer-Encoding: 7bit\r\n", "Content-Transfer-Encoding: 8bit\r\n",
			"Content-Transfer-Encoding: binary\r\n", "Content-Transfer-Encoding: x-uuencode\r\n"} {
			for _, b := range []string{"", "text\r\n", "caf\xe9 \x00\xff\r\nline", "QUJD", "=41"} {
				add(t+cte, b)
			}
		}
	}
	// Every byte in every charset decodeLeaf converts, in each transfer encoding.
	var all []byte
	for b := range 256 {
		all = append(all, byte(b))
	}
	var qpAll strings.Builder
	for _, b := range all {
		fmt.Fprintf(&qpAll, "=%02X", b)
	}
	// Multi-byte text: Shift_JIS, ISO-2022-JP, EUC-KR, GBK, Big5, UTF-16, and invalid sequences.
	multi := "\x82\xa0\x93\xfa\x96\x7b\x1b$B$3$s\x1b(B\xb0\xa1\xc7\xd1\xa4\x40\x00a\x00b\xff\xfe\x81\x1b$"
	labels := slices.Sorted(maps.Keys(byteCharsets))
	labels = append(labels, strings.Split(enmimeCharsetLabels, ",")...)
	labels = append(labels, slices.Sorted(maps.Keys(notEnmimeLabels))...)
	labels = append(labels, "ISO-8859-1", "Windows-1252", "Shift_JIS", "latin-1", " utf-8", "gbk ", "x-unknown")
	for _, l := range labels {
		t := "Content-Type: text/plain; charset=\"" + l + "\"\r\n"
		add(t, string(all)+multi)
		add(t+"Content-Transfer-Encoding: quoted-printable\r\n", qpAll.String())
		add(t+"Content-Transfer-Encoding: base64\r\n", base64.StdEncoding.EncodeToString([]byte(multi+string(all))))
	}
	// No header section, a header only, folded and malformed headers.
	out = append(out, []byte("just a body"), []byte("Content-Type: text/plain"), []byte("\r\nbody"))
	add("Content-Type: text/plain;\r\n charset=utf-8\r\nContent-Transfer-Encoding:\r\n quoted-printable\r\n", "a=3Db")
	add("Content-Type: text/plain\r\n::bad\r\nnot a header\r\nContent-Transfer-Encoding: base64\r\n", "QUJD")
	return out
}

// TestDecodeLeafMatchesEnmime: wherever decodeLeaf decodes a part itself, enmime makes the same
// part of it (fields, problems and content).
func TestDecodeLeafMatchesEnmime(t *testing.T) {
	var leaves [][]byte
	for _, name := range fixtures(t) {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		leaves = append(leaves, leafParts(raw)...)
	}
	for _, h := range hostileInputs() {
		ls := leafParts(h.raw)
		leaves = append(leaves, ls[:min(len(ls), 20)]...)
	}
	leaves = append(leaves, decodeLeafCases()...)
	took := 0
	for _, leaf := range leaves {
		diff, ok := sameAsEnmime(leaf)
		if ok {
			took++
		}
		if diff != "" {
			t.Errorf("leaf %q:\n%s", clip(leaf), diff)
		}
	}
	t.Logf("%d leaves, %d decoded by decodeLeaf", len(leaves), took)
	if took < len(leaves)/3 {
		t.Errorf("decodeLeaf took only %d of %d leaves", took, len(leaves))
	}
}

// FuzzDecodeLeaf: decodeLeaf agrees with enmime on any leaf.
//
//	go test -run '^$' -fuzz FuzzDecodeLeaf -fuzztime 2m ./mailparse/
func FuzzDecodeLeaf(f *testing.F) {
	for _, c := range decodeLeafCases() {
		if len(c) <= 2<<10 { // TestDecodeLeafMatchesEnmime runs them all
			f.Add(c)
		}
	}
	f.Fuzz(func(t *testing.T, leaf []byte) {
		if diff, _ := sameAsEnmime(leaf); diff != "" {
			t.Errorf("%s", diff)
		}
	})
}

func qpLongLines() string {
	var b strings.Builder
	for i := range 60 {
		b.WriteString(strings.Repeat("x\xe9=41", 200+i*13))
		b.WriteString("\r\n")
	}
	return b.String()
}

// qpLostByte is a body on which enmime's cleaner loses a byte (found by search).
func qpLostByte() string {
	r := rand.New(rand.NewPCG(453, 1))
	var b strings.Builder
	for b.Len() < 20000 {
		switch r.IntN(10) {
		case 0:
			b.WriteString("\xe9")
		case 1:
			b.WriteString("=41")
		case 2:
			if r.IntN(20) == 0 {
				b.WriteString("\r\n")
			}
		default:
			b.WriteString("a")
		}
	}
	return b.String()
}

// enmimeCharsetLabels are the labels of enmime's charset table (v2.3.0, internal/coding).
const enmimeCharsetLabels = "unicode-1-1-utf-8,utf-8,utf8,utf-7,utf7,866,cp866,csibm866,ibm866,csisolatin2," +
	"iso-8859-2,iso-ir-101,iso8859-2,iso88592,iso_8859-2,iso_8859-2:1987,l2,latin2,csisolatin3,iso-8859-3," +
	"iso-ir-109,iso8859-3,iso88593,iso_8859-3,iso_8859-3:1988,l3,latin3,csisolatin4,iso-8859-4,iso-ir-110," +
	"iso8859-4,iso88594,iso_8859-4,iso_8859-4:1988,l4,latin4,csisolatincyrillic,cyrillic,iso-8859-5," +
	"iso-ir-144,iso8859-5,iso88595,iso_8859-5,iso_8859-5:1988,arabic,asmo-708,csiso88596e,csiso88596i," +
	"csisolatinarabic,ecma-114,iso-8859-6,iso-8859-6-e,iso-8859-6-i,iso-ir-127,iso8859-6,iso88596," +
	"iso_8859-6,iso_8859-6:1987,csisolatingreek,ecma-118,elot_928,greek,greek8,iso-8859-7,iso-ir-126," +
	"iso8859-7,iso88597,iso_8859-7,iso_8859-7:1987,sun_eu_greek,csiso88598e,csisolatinhebrew,hebrew," +
	"iso-8859-8,iso-8859-8-e,iso-ir-138,iso8859-8,iso88598,iso_8859-8,iso_8859-8:1988,visual,csiso88598i," +
	"iso-8859-8-i,logical,csisolatin6,iso-8859-10,iso-ir-157,iso8859-10,iso885910,l6,latin6,iso-8859-13," +
	"iso8859-13,iso885913,iso-8859-14,iso8859-14,iso885914,csisolatin9,iso-8859-15,iso8859-15,iso885915," +
	"iso_8859-15,l9,iso-8859-16,cskoi8r,koi,koi8,koi8-r,koi8_r,koi8-u,csmacintosh,mac,macintosh," +
	"x-mac-roman,dos-874,iso-8859-11,iso8859-11,iso885911,tis-620,windows-874,cp1250,windows-1250," +
	"x-cp1250,cp1251,windows-1251,x-cp1251,ansi_x3.4-1968,ascii,cp1252,cp819,csisolatin1,ibm819," +
	"iso-8859-1,iso-ir-100,iso8859-1,iso8859_1,iso88591,iso_8859-1,iso_8859-1:1987,l1,latin1,us-ascii," +
	"windows-1252,x-cp1252,cp1253,windows-1253,x-cp1253,cp1254,csisolatin5,iso-8859-9,iso-ir-148," +
	"iso8859-9,iso88599,iso_8859-9,iso_8859-9:1989,l5,latin5,windows-1254,x-cp1254,cp1255,windows-1255," +
	"x-cp1255,cp1256,windows-1256,x-cp1256,cp1257,windows-1257,x-cp1257,cp1258,windows-1258,x-cp1258," +
	"x-mac-cyrillic,x-mac-ukrainian,chinese,csgb2312,csiso58gb231280,gb2312,gb_2312,gb_2312-80,gbk," +
	"iso-ir-58,x-gbk,gb18030,hz-gb-2312,big5,big5-hkscs,cn-big5,csbig5,x-x-big5,cseucpkdfmtjapanese," +
	"euc-jp,x-euc-jp,csiso2022jp,iso-2022-jp,csshiftjis,ms_kanji,shift-jis,shift_jis,sjis,windows-31j," +
	"x-sjis,cseuckr,csksc56011987,euc-kr,iso-ir-149,korean,ks_c_5601-1987,ks_c_5601-1989,ksc5601," +
	"ksc_5601,windows-949,csiso2022kr,iso-2022-kr,iso-2022-cn,iso-2022-cn-ext,utf-16be,utf-16,utf-16le," +
	"x-user-defined,iso646-us,iso: western,we8iso8859p1,cp936,cp850,cp-850,ibm850,136,cp932,8859-1," +
	"8859_1,8859-2,8859_2,8859-3,8859_3,8859-4,8859_4,8859-5,8859_5,8859-6,8859_6,8859-7,8859_7,8859-8," +
	"8859_8,8859-10,8859_10,8859-13,8859_13,8859-14,8859_14,8859-15,8859_15,8859-16,8859_16,utf8mb4,238"

// TestParseLargeMessageMemory: Parse allocates a large message's decoded content once, at its
// size, and the Message holds nothing more (a regression would show as 2 to 5 times).
func TestParseLargeMessageMemory(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  []byte
	}{
		{"base64 attachment", mimeWithAttachments(1, 3<<20)},
		{"20 attachments", mimeWithAttachments(20, 150<<10)},
		{"quoted-printable text", qpTextMessage(4 << 20)},
		{"latin-1 quoted-printable text", bytes.Replace(qpTextMessage(4<<20), []byte("charset=utf-8"), []byte("charset=iso-8859-1"), 1)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if raceEnabled {
				t.Skip("the race runtime allocates more")
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			m, err := Parse(tc.raw, Limits{})
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			decoded := len(m.Text) + len(m.HTML)
			for _, a := range m.Attachments {
				decoded += len(a.Data)
				if cap(a.Data) != len(a.Data) {
					t.Errorf("%s: capacity %d for %d bytes", a.Filename, cap(a.Data), len(a.Data))
				}
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			budget := uint64(decoded)*11/10 + 256<<10
			if strings.Contains(tc.name, "latin-1") {
				budget += uint64(decoded) // decoded, then converted
			}
			t.Logf("%d bytes in, %d decoded, %d allocated", len(tc.raw), decoded, alloc)
			if alloc > budget {
				t.Errorf("allocated %d, budget %d", alloc, budget)
			}
		})
	}
}
