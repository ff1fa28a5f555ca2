package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ringmaster/ringmaster/client"
)

type stateCounts struct {
	products, updates, deployments, blobs, staged int
}

func counts(t *testing.T, s *server) stateCounts {
	t.Helper()
	ctx := context.Background()
	ps, err := s.admin.Products(ctx)
	if err != nil {
		t.Fatal(err)
	}
	us, _ := s.admin.Updates(ctx, "")
	ds, _ := s.admin.Deployments(ctx, "")
	c := stateCounts{products: len(ps), updates: len(us), deployments: len(ds)}
	c.blobs, c.staged = countBlobs(t, s.data)
	return c
}

// TestBadInput sends what users get wrong: each gets a 4xx problem+json
// that says what was wrong, and nothing is stored.
func TestBadInput(t *testing.T) {
	s := startServer(t, "")
	ctx := context.Background()
	if _, err := s.admin.PutProduct(ctx, client.Product{Name: "agent"}); err != nil {
		t.Fatal(err)
	}
	pending, err := s.admin.CreateUpdate(ctx, client.NewUpdate{Product: "agent", Version: "1.0",
		Payloads: []client.NewPayload{{Name: "a.bin", SHA256: strings.Repeat("ab", 32), Size: 11}}})
	if err != nil {
		t.Fatal(err)
	}
	upload := "/v1/updates/" + pending.ID + "/payloads/" + strings.Repeat("ab", 32)
	goodUpdate := func(mut func(m map[string]any)) string {
		m := map[string]any{"product": "agent", "version": "2.0", "payloads": []any{
			map[string]any{"name": "b.bin", "sha256": strings.Repeat("cd", 32), "size": 5}}}
		mut(m)
		b, _ := json.Marshal(m)
		return string(b)
	}
	before := counts(t, s)

	tests := []struct {
		name, method, path, body string
		hdr                      map[string]string
		noAuth                   bool
		status                   int
		detail                   string
	}{
		{"no token", "GET", "/v1/products", "", nil, true, 401, "bearer token is required"},
		{"unknown token", "GET", "/v1/products", "", map[string]string{"Authorization": "Bearer rmt_" + strings.Repeat("0", 64)}, true, 401, "unknown token"},
		{"malformed token", "GET", "/v1/products", "", map[string]string{"Authorization": "Bearer hunter2"}, true, 401, "bearer token"},
		{"oversized body", "POST", "/v1/updates", `{"release_notes":"` + strings.Repeat("x", 300<<10) + `"}`, nil, false, 413, "larger than"},
		{"malformed JSON", "POST", "/v1/updates", `{"product":`, nil, false, 400, "JSON"},
		{"empty body", "POST", "/v1/updates", ``, nil, false, 400, "empty"},
		{"wrong content type", "POST", "/v1/updates", goodUpdate(func(map[string]any) {}), map[string]string{"Content-Type": "text/plain"}, false, 400, "Content-Type"},
		{"unknown field", "POST", "/v1/updates", goodUpdate(func(m map[string]any) { m["verison"] = "x" }), nil, false, 400, `unknown field "verison"`},
		{"unknown product", "POST", "/v1/updates", goodUpdate(func(m map[string]any) { m["product"] = "nope" }), nil, false, 404, `product "nope" not found`},
		{"bad version", "POST", "/v1/updates", goodUpdate(func(m map[string]any) { m["version"] = "1..2" }), nil, false, 400, "version"},
		{"bad kind", "POST", "/v1/updates", goodUpdate(func(m map[string]any) { m["kind"] = "virus" }), nil, false, 400, "kind"},
		{"bad hash", "POST", "/v1/updates", goodUpdate(func(m map[string]any) {
			m["payloads"] = []any{map[string]any{"name": "b.bin", "sha256": "xyz", "size": 5}}
		}), nil, false, 400, "SHA-256"},
		{"path in file name", "POST", "/v1/updates", goodUpdate(func(m map[string]any) {
			m["payloads"] = []any{map[string]any{"name": "../../etc/passwd", "sha256": strings.Repeat("cd", 32), "size": 5}}
		}), nil, false, 400, "file name"},
		{"no payloads", "POST", "/v1/updates", goodUpdate(func(m map[string]any) { m["payloads"] = []any{} }), nil, false, 400, "payload"},
		{"bad product name", "PUT", "/v1/products/Bad%20Name", `{}`, nil, false, 400, "product name"},
		{"same version, other content", "POST", "/v1/updates", `{"product":"agent","version":"1.0.0","payloads":[{"name":"z.bin","sha256":"` + strings.Repeat("ef", 32) + `","size":1}]}`, nil, false, 409, "different content"},
		{"hash mismatch on upload", "PUT", upload, "hello world", nil, false, 400, "hash mismatch"},
		{"upload larger than declared", "PUT", upload, "hello world, and more", nil, false, 413, "declared size"},
		{"bad Content-Range", "PUT", upload, "hello", map[string]string{"Content-Range": "bytes 0-4/99"}, false, 400, "declared size"},
		{"resume at the wrong offset", "PUT", upload, "world", map[string]string{"Content-Range": "bytes 6-10/11"}, false, 409, "offset"},
		{"publish before upload", "POST", "/v1/updates/" + pending.ID + "/publish", "", nil, false, 409, "not fully uploaded"},
		{"deploy unpublished", "POST", "/v1/deployments", `{"update_id":"` + pending.ID + `"}`, nil, false, 409, "only published updates"},
		{"deploy unknown version", "POST", "/v1/deployments", `{"product":"agent","version":"9.9"}`, nil, false, 404, "no version 9.9"},
		{"deploy bad version", "POST", "/v1/deployments", `{"product":"agent","version":"nine"}`, nil, false, 400, "version"},
		{"path trick in update id", "GET", "/v1/updates/..%2F..%2Fetc", "", nil, false, 400, "not a valid upd id"},
		{"path trick in payload", "PUT", "/v1/updates/" + pending.ID + "/payloads/..%2F..%2Fx", "x", nil, false, 400, "SHA-256"},
		{"path trick in content", "GET", "/v1/content/..%2F..%2Fadmin.token", "", nil, true, 400, "SHA-256"},
		{"missing content", "GET", "/v1/content/" + strings.Repeat("0", 64), "", nil, true, 404, "not found"},
		{"unknown deployment", "POST", "/v1/deployments/dep_00000000000000000000000000/cancel", `{"reason":"x"}`, nil, false, 404, "not found"},
		{"bad state filter", "GET", "/v1/updates?state=bogus", "", nil, false, 400, "state"},
		{"unknown endpoint", "GET", "/v1/nothing", "", nil, true, 404, "no such endpoint"},
		{"check-in: malformed", "POST", "/v1/device/check", `{"device_id":`, nil, true, 400, "not valid JSON"},
		{"check-in: oversized", "POST", "/v1/device/check", `{"device_id":"d","x":"` + strings.Repeat("y", 70<<10) + `"}`, nil, true, 413, "larger than"},
		{"check-in: bad device id", "POST", "/v1/device/check", `{"device_id":"../etc"}`, nil, true, 400, "device_id"},
		{"token: unknown role", "POST", "/v1/tokens", `{"name":"x","role":"root"}`, nil, false, 400, "is not a role"},
		{"token: bad scope", "POST", "/v1/tokens", `{"name":"x","role":"viewer","products":["Bad Name"]}`, nil, false, 400, "products[0]"},
		{"token: bad ttl", "POST", "/v1/tokens", `{"name":"x","role":"viewer","ttl":"forever"}`, nil, false, 400, "ttl"},
		{"token: negative budget", "POST", "/v1/tokens", `{"name":"x","role":"agent","budget":-1}`, nil, false, 400, "budget"},
		{"token: revoke bad id", "POST", "/v1/tokens/../revoke", "", nil, false, 404, ""},
		{"enrollment: no name", "POST", "/v1/enrollment-keys", `{}`, nil, false, 400, "name"},
		{"device revoke: no reason", "POST", "/v1/devices/d1/revoke", `{}`, nil, false, 400, "reason"},
		{"device reset: no reason", "POST", "/v1/devices/d1/reset", `{}`, nil, false, 400, "reason"},
		{"device reset: bad id", "POST", "/v1/devices/-x/reset", `{"reason":"x"}`, nil, false, 400, "id"},
		{"enrollment: negative quota", "POST", "/v1/enrollment-keys", `{"name":"x","max_devices":-1}`, nil, false, 400, "max_devices"},
		{"audit: bad since", "GET", "/v1/audit?since=yesterday", "", nil, false, 400, "since"},
		{"audit: bad limit", "GET", "/v1/audit?limit=0", "", nil, false, 400, "limit"},
		{"audit: bad anchor", "GET", "/v1/audit/verify?anchor=abc", "", nil, false, 400, "anchor"},
		{"approval: bad id", "POST", "/v1/approvals/nope/approve", `{}`, nil, false, 400, "id"},
		{"approval: bad decision", "POST", "/v1/approvals/apr_00000000000000000000000000/maybe", `{}`, nil, false, 404, "approve or deny"},
		{"enroll: no key", "POST", "/v1/device/enroll", `{"device_id":"d1"}`, nil, true, 401, "enrollment key"},
		{"tuf: unknown metadata", "GET", "/v1/tuf/7.timestamp.json", "", nil, true, 404, "no TUF metadata"},
		{"tuf: root push not TUF", "POST", "/v1/tuf-admin/root?reason=x", `{"signed":{}}`, nil, false, 400, "not TUF root"},
		{"check-in: bad installed version", "POST", "/v1/device/check", `{"device_id":"d","installed":[{"product":"agent","version":"v.1"}]}`, nil, true, 400, "installed[0].version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, s.url+tt.path, strings.NewReader(tt.body))
			if !tt.noAuth {
				req.Header.Set("Authorization", "Bearer "+s.token)
			}
			if tt.body != "" && !strings.HasPrefix(tt.path, "/v1/updates/upd_") {
				req.Header.Set("Content-Type", "application/json")
			}
			for k, v := range tt.hdr {
				req.Header.Set(k, v)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tt.status, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
				t.Fatalf("Content-Type %q: %s", ct, body)
			}
			var p struct {
				Type, Title, Detail string
				Status              int
			}
			if err := json.Unmarshal(body, &p); err != nil || p.Status != tt.status || !strings.HasPrefix(p.Type, "urn:ringmaster:problem:") {
				t.Fatalf("problem %s: %v", body, err)
			}
			if !strings.Contains(p.Detail, tt.detail) {
				t.Fatalf("detail %q does not mention %q", p.Detail, tt.detail)
			}
		})
	}
	if after := counts(t, s); after != before {
		t.Fatalf("bad input changed state: before %+v, after %+v", before, after)
	}
	if u, _ := s.admin.Update(ctx, pending.ID); u.State != "awaiting_upload" || u.Payloads[0].ReceivedBytes != 0 {
		t.Fatalf("pending update after bad uploads: %+v", u)
	}
}
