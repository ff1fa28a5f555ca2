package apptest

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/ringmaster/ringmaster/client"
)

// MCPSession connects the Go SDK's MCP client to the server as c's token.
func MCPSession(t testing.TB, c *client.Client) *mcp.ClientSession {
	t.Helper()
	sess, err := mcp.NewClient(&mcp.Implementation{Name: "test-agent", Version: "1"}, nil).
		Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: c.MCPURL(), HTTPClient: c.HTTPClient()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sess.Close() })
	return sess
}

// CallTool calls a tool and decodes its structured result into out; a
// tool error is returned as its text (empty on success), a protocol error
// fails the test.
func CallTool(t testing.TB, sess *mcp.ClientSession, name string, args map[string]any, out any) string {
	t.Helper()
	res, err := sess.CallTool(context.Background(), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("%s: protocol error %v", name, err)
	}
	if res.IsError {
		var msg []string
		for _, c := range res.Content {
			if tc, ok := c.(*mcp.TextContent); ok {
				msg = append(msg, tc.Text)
			}
		}
		return strings.Join(msg, " ")
	}
	if res.StructuredContent == nil {
		t.Fatalf("%s: no structured result", name)
	}
	if out != nil {
		b, _ := json.Marshal(res.StructuredContent)
		if err := json.Unmarshal(b, out); err != nil {
			t.Fatalf("%s: result %s: %v", name, b, err)
		}
	}
	return ""
}
