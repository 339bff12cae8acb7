package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"
)

const adminUsage = `Usage: mailwire admin [--server URL] [--admin-token T] COMMAND

Commands:
  accounts create NAME    create an account; prints its id and first API key (shown once)
  accounts list           list accounts
  keys list ACCOUNT       list the API keys of account ACCOUNT (acc_...): ids, last 4 characters, last use
  keys create ACCOUNT     add an API key to account ACCOUNT (acc_...)
  keys revoke KEY         revoke API key KEY (key_...); its WebSockets close with 4001

Flags (also MAILWIRE_SERVER, MAILWIRE_ADMIN_TOKEN):
`

// admin is `mailwire admin`: a thin client of /admin/v1.
func admin(args []string, out io.Writer) error {
	fs := flag.NewFlagSet("mailwire admin", flag.ContinueOnError)
	server := fs.String("server", "http://127.0.0.1:8080", "the mailwire server `URL`")
	token := fs.String("admin-token", "", "the server's admin `token`")
	fs.Usage = func() { fmt.Fprint(fs.Output(), adminUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *token == "" {
		return errors.New("admin: --admin-token (or MAILWIRE_ADMIN_TOKEN) is required")
	}
	a := fs.Args()
	var method, path string
	var body any
	switch {
	case len(a) == 3 && a[0] == "accounts" && a[1] == "create":
		method, path, body = http.MethodPost, "/admin/v1/accounts", map[string]string{"name": a[2]}
	case len(a) == 2 && a[0] == "accounts" && a[1] == "list":
		return apiListAll(strings.TrimRight(*server, "/"), *token, "/admin/v1/accounts", out)
	case len(a) == 3 && a[0] == "keys" && a[1] == "list":
		return apiListAll(strings.TrimRight(*server, "/"), *token, "/admin/v1/accounts/"+url.PathEscape(a[2])+"/api-keys", out)
	case len(a) == 3 && a[0] == "keys" && a[1] == "create":
		method, path = http.MethodPost, "/admin/v1/accounts/"+url.PathEscape(a[2])+"/api-keys"
	case len(a) == 3 && a[0] == "keys" && a[1] == "revoke":
		method, path = http.MethodDelete, "/admin/v1/api-keys/"+url.PathEscape(a[2])
	case len(a) == 0:
		return fmt.Errorf("admin: a command is needed (see mailwire admin --help)")
	default:
		return fmt.Errorf("admin: unknown command or missing argument: %q (see mailwire admin --help)", strings.Join(a, " "))
	}
	return apiCall(strings.TrimRight(*server, "/"), *token, method, path, body, out)
}

// apiListAll fetches every page of a list (the API gives at most 100
// items per request) and prints them as one list.
func apiListAll(server, token, path string, out io.Writer) error {
	var all struct {
		Data  []json.RawMessage `json:"data"`
		Total int               `json:"total"`
	}
	all.Data = []json.RawMessage{}
	for {
		data, status, err := apiDo(server, token, http.MethodGet, fmt.Sprintf("%s?limit=100&offset=%d", path, len(all.Data)), nil)
		if err != nil {
			return err
		}
		var page struct {
			Data  []json.RawMessage `json:"data"`
			Total int               `json:"total"`
		}
		if status != http.StatusOK || json.Unmarshal(data, &page) != nil {
			return fmt.Errorf("GET %s: unexpected answer %d", path, status)
		}
		all.Data = append(all.Data, page.Data...)
		all.Total = page.Total
		if len(page.Data) == 0 || len(all.Data) >= page.Total {
			break
		}
	}
	b, err := json.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	_, err = out.Write(append(b, '\n'))
	return err
}

// apiCall sends one request and prints the answer (indented JSON, or "ok"
// for 204).
func apiCall(server, token, method, path string, body any, out io.Writer) error {
	data, status, err := apiDo(server, token, method, path, body)
	if err != nil {
		return err
	}
	if status == http.StatusNoContent {
		fmt.Fprintln(out, "ok")
		return nil
	}
	var pretty bytes.Buffer
	if json.Indent(&pretty, data, "", "  ") != nil {
		_, err = out.Write(data)
		return err
	}
	pretty.WriteByte('\n')
	_, err = out.Write(pretty.Bytes())
	return err
}

// keyShaped matches an API key, which error messages never repeat.
var keyShaped = regexp.MustCompile(`om_[0-9A-Za-z]{4,}`)

// apiDo sends one request and returns the answer's body and status; an
// answer of 300 or more is an error carrying the server's code and message.
func apiDo(server, token, method, path string, body any) ([]byte, int, error) {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, server+path, rd)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		return nil, 0, fmt.Errorf("cannot reach %s: %w", server, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, 0, fmt.Errorf("cannot read the answer: %w", err)
	}
	if resp.StatusCode >= 300 {
		path = keyShaped.ReplaceAllString(path, "om_…")
		var e struct{ Error, Message string }
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return nil, 0, fmt.Errorf("%s %s: %d %s: %s", method, path, resp.StatusCode, e.Error, e.Message)
		}
		return nil, 0, fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return data, resp.StatusCode, nil
}
