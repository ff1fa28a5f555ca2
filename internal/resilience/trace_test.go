package resilience

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/ringmaster/ringmaster/client"
	"github.com/ringmaster/ringmaster/internal/apptest"
	"github.com/ringmaster/ringmaster/internal/tracing"
)

// TestPublishTrace: one publish is one trace, from the admin request
// through the pipeline's durable jobs to the signing of the TUF metadata;
// device check-ins with a sampling ratio of 0 leave no spans.
func TestPublishTrace(t *testing.T) {
	ctx := context.Background()
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans), sdktrace.WithSampler(tracing.Sampler(0)))
	before := otel.GetTracerProvider()
	otel.SetTracerProvider(tp)
	t.Cleanup(func() {
		otel.SetTracerProvider(before)
		tp.Shutdown(ctx)
	})
	s := apptest.Start(t, "", nil)
	file := filepath.Join(t.TempDir(), "agent.bin")
	if err := os.WriteFile(file, []byte("agent 2.0"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := s.Admin.PublishFiles(ctx, client.NewUpdate{Product: "agent", Version: "2.0"}, []string{file}, client.PublishOptions{Poll: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Admin.Deploy(ctx, "agent", "2.0"); err != nil {
		t.Fatal(err)
	}
	device, _ := client.New(s.URL, s.DeviceCredential("dev-1"))
	if r, err := device.CheckIn(ctx, client.CheckInRequest{DeviceID: "dev-1", Installed: []client.Installed{{Product: "agent", Version: "1.0"}}}); err != nil || len(r.Offers) != 1 {
		t.Fatalf("check-in: %+v, %v", r, err)
	}

	var publish trace.SpanContext
	for _, sp := range spans.GetSpans() {
		if sp.Name == "POST /v1/updates/{id}/publish" {
			publish = sp.SpanContext
		}
		if sp.Name == "POST /v1/device/check" {
			t.Errorf("a device check-in was traced with a device ratio of 0")
		}
	}
	if !publish.IsValid() {
		t.Fatalf("no span for the publish request among %d", len(spans.GetSpans()))
	}
	// The finalize job signs after the request has answered: wait for it.
	want := []string{"job publish_ingest", "job publish_finalize", "tuf.sign"}
	apptest.WaitFor(t, 30*time.Second, func() bool {
		found := map[string]bool{}
		for _, sp := range spans.GetSpans() {
			if sp.SpanContext.TraceID() == publish.TraceID() {
				found[sp.Name] = true
			}
		}
		for _, w := range want {
			if !found[w] {
				return false
			}
		}
		return true
	})
	byID := map[trace.SpanID]tracetest.SpanStub{}
	for _, sp := range spans.GetSpans() {
		byID[sp.SpanContext.SpanID()] = sp
	}
	// Every span of the trace leads back to the request.
	for _, sp := range spans.GetSpans() {
		if sp.SpanContext.TraceID() != publish.TraceID() {
			continue
		}
		for cur := sp; cur.SpanContext.SpanID() != publish.SpanID(); {
			parent, ok := byID[cur.Parent.SpanID()]
			if !ok {
				t.Fatalf("span %q of the publish trace does not lead back to the request", sp.Name)
			}
			cur = parent
		}
	}
}
