package engine

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestOpenAPIMatchesRoutes checks /v1/openapi.json against the router:
// every route is in the document with its method, every operation of the
// document is a route, path parameters are declared, and each operation
// says how it authenticates as the route does.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	var doc struct {
		OpenAPI string `json:"openapi"`
		Paths   map[string]map[string]struct {
			Parameters []struct {
				Name, In string
				Required bool
			} `json:"parameters"`
			Security  []map[string][]string `json:"security"`
			Responses map[string]any        `json:"responses"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q, want 3.x", doc.OpenAPI)
	}
	routes := map[string]*route{}
	for _, r := range (&Server{}).routes().routes {
		routes[r.method+" "+r.path] = r
	}
	documented := map[string]bool{}
	param := regexp.MustCompile(`\{(\w+)\}`)
	for path, ops := range doc.Paths {
		for method, op := range ops {
			key := strings.ToUpper(method) + " " + path
			documented[key] = true
			r, ok := routes[key]
			if !ok {
				t.Errorf("openapi.json has %s, which no route serves", key)
				continue
			}
			var inPath []string
			for _, p := range op.Parameters {
				if p.In == "path" && p.Required {
					inPath = append(inPath, p.Name)
				}
			}
			for _, m := range param.FindAllStringSubmatch(path, -1) {
				if !slices.Contains(inPath, m[1]) {
					t.Errorf("%s: path parameter %s is not declared", key, m[1])
				}
			}
			if len(op.Responses) == 0 {
				t.Errorf("%s has no responses", key)
			}
			want := map[authKind]string{authNone: "", authAccount: "apiKey", authAdmin: "adminToken"}[r.auth]
			got := ""
			if len(op.Security) > 0 {
				for k := range op.Security[0] {
					got = k
				}
			}
			if got != want {
				t.Errorf("%s: security %q, the route wants %q", key, got, want)
			}
		}
	}
	for key := range routes {
		if !documented[key] {
			t.Errorf("route %s is missing from openapi.json (edit scripts/gen-openapi.py)", key)
		}
	}
}
