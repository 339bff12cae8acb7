package engine_test

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/mailwire/mailwire/internal/app"
)

// rawGet sends GET url with the key and headers over a transport that does
// not ask for gzip by itself, and returns the answer with its body.
func rawGet(t *testing.T, url, key string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+key)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	tr := &http.Transport{DisableCompression: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

func TestRESTGzipAndBodilessMessageList(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "big"})
	text := strings.Repeat("a long body line that compresses well\n", 2000)
	var sent []inboundReply
	for range 3 {
		r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "s", "text": text, "html": "<p>" + text + "</p>"})
		sent = append(sent, r)
	}

	// The list has no bodies; each message still has them.
	resp, plain := rawGet(t, s.URL+"/v1/inboxes/"+in.ID+"/messages", a.Key)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Encoding") != "" {
		t.Fatalf("list without Accept-Encoding: %d, Content-Encoding %q", resp.StatusCode, resp.Header.Get("Content-Encoding"))
	}
	var l struct {
		Data  []map[string]any
		Total int
	}
	if err := json.Unmarshal(plain, &l); err != nil || l.Total != 3 || len(l.Data) != 3 {
		t.Fatalf("list: %v %s", err, plain)
	}
	for _, item := range l.Data {
		if _, ok := item["bodyText"]; ok {
			t.Errorf("a list item has bodyText")
		}
		if _, ok := item["bodyHtml"]; ok {
			t.Errorf("a list item has bodyHtml")
		}
		for _, f := range []string{"id", "inboxId", "threadId", "rfcMessageId", "from", "to", "cc", "subject", "attachments", "receivedAt"} {
			if _, ok := item[f]; !ok {
				t.Errorf("a list item lacks %s", f)
			}
		}
	}
	if len(plain) > 4096 {
		t.Errorf("a list of 3 messages is %d bytes", len(plain))
	}

	// A large JSON answer is gzipped for a client that accepts it, and
	// only then; small ones are not.
	url := s.URL + "/v1/messages/" + sent[0].MessageID
	resp, plain = rawGet(t, url, a.Key)
	if resp.Header.Get("Content-Encoding") != "" || !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
		t.Errorf("no Accept-Encoding: Content-Encoding %q, Vary %q", resp.Header.Get("Content-Encoding"), resp.Header.Get("Vary"))
	}
	var m struct{ BodyText string }
	if err := json.Unmarshal(plain, &m); err != nil || m.BodyText != text {
		t.Fatalf("message: %v, body %d bytes", err, len(m.BodyText))
	}
	for _, ae := range []string{"gzip", "br, gzip;q=0.5", "*"} {
		resp, zipped := rawGet(t, url, a.Key, "Accept-Encoding", ae)
		if resp.Header.Get("Content-Encoding") != "gzip" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("Accept-Encoding %q: Content-Encoding %q", ae, resp.Header.Get("Content-Encoding"))
		}
		if resp.ContentLength != int64(len(zipped)) || len(zipped)*10 > len(plain) {
			t.Errorf("Accept-Encoding %q: Content-Length %d, %d bytes gzipped of %d", ae, resp.ContentLength, len(zipped), len(plain))
		}
		zr, err := gzip.NewReader(bytes.NewReader(zipped))
		if err != nil {
			t.Fatal(err)
		}
		unzipped, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(unzipped, plain) {
			t.Fatalf("Accept-Encoding %q: the gzipped answer is not the plain one (%v)", ae, err)
		}
	}
	for _, ae := range []string{"gzip;q=0", "br", "identity"} {
		if resp, _ := rawGet(t, url, a.Key, "Accept-Encoding", ae); resp.Header.Get("Content-Encoding") != "" {
			t.Errorf("Accept-Encoding %q: Content-Encoding %q", ae, resp.Header.Get("Content-Encoding"))
		}
	}
	if resp, _ := rawGet(t, s.URL+"/v1/inboxes/"+in.ID, a.Key, "Accept-Encoding", "gzip"); resp.Header.Get("Content-Encoding") != "" {
		t.Errorf("a small answer is gzipped")
	}
}

func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	s := startAPI(t)
	a := s.NewAccount("a")
	checkErr(t, s, "GET", "/v1/openapi.json", "", nil, http.StatusUnauthorized, "unauthorized")
	var doc struct {
		OpenAPI string
		Paths   map[string]any
	}
	s.MustJSON("GET", "/v1/openapi.json", a.Key, nil, http.StatusOK, &doc)
	if !strings.HasPrefix(doc.OpenAPI, "3.") || doc.Paths["/v1/inboxes/{id}/messages"] == nil {
		t.Errorf("openapi.json: %q, %d paths", doc.OpenAPI, len(doc.Paths))
	}
}

// --public-url makes attachment URLs absolute in events and in message
// answers; without it they stay relative.
func TestPublicURLMakesAttachmentURLsAbsolute(t *testing.T) {
	t.Parallel()
	for _, base := range []string{"", "https://mail.example.com"} {
		s := startAPI(t, func(c *app.Config) { c.PublicURL = base + "/" })
		if base == "" {
			s = startAPI(t)
		}
		a := s.NewAccount("a")
		in := createInbox(t, s, a.Key, map[string]any{"mailboxName": "pub"})
		r, _ := inboundJSON(t, s, a.Key, in.ID, map[string]any{"from": "c@example.com", "subject": "s", "text": "t",
			"attachments": []map[string]string{{"filename": "a b.txt", "contentBase64": "eA=="}}})
		want := `"url":"` + base + `/v1/attachments/` + r.MessageID + `/a%20b.txt"`
		for _, path := range []string{"/v1/events/" + r.EventID, "/v1/messages/" + r.MessageID} {
			if _, body, _ := call(s, "GET", path, a.Key, nil); !strings.Contains(string(body), want) {
				t.Errorf("base %q: GET %s lacks %s: %s", base, path, want, body)
			}
		}
	}
}
