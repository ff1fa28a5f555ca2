package jobs

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
)

// A library's routine information goes to debug; its warnings stay.
func TestQuietLibraryLogs(t *testing.T) {
	var out bytes.Buffer
	log := slog.New(quiet{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelInfo})}).With("component", "jobs")
	log.Info("producer job counts")
	log.Log(context.Background(), slog.LevelInfo+2, "between info and warn")
	log.Warn("job failed")
	log.Error("database gone")
	got := out.String()
	if strings.Contains(got, "producer job counts") || strings.Contains(got, "between info") {
		t.Errorf("routine library information logged at info:\n%s", got)
	}
	if !strings.Contains(got, "level=WARN msg=\"job failed\" component=jobs") || !strings.Contains(got, "level=ERROR") {
		t.Errorf("library warnings lost:\n%s", got)
	}
	out.Reset()
	debug := slog.New(quiet{slog.NewTextHandler(&out, &slog.HandlerOptions{Level: slog.LevelDebug})})
	debug.Info("producer job counts")
	if !strings.Contains(out.String(), "level=DEBUG msg=\"producer job counts\"") {
		t.Errorf("at debug level the library's information shows as debug: %q", out.String())
	}
}
