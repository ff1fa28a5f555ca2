package pipeline

import (
	"testing"
	"time"

	"github.com/ringmaster/ringmaster/internal/content"
)

func TestGarbage(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	cutoff := now.Add(-24 * time.Hour)
	blobs := []content.Blob{
		{SHA256: "c-old-unreferenced", Modified: now.Add(-48 * time.Hour)},
		{SHA256: "a-old-referenced", Modified: now.Add(-48 * time.Hour)},
		{SHA256: "b-young-unreferenced", Modified: now.Add(-time.Hour)},
		{SHA256: "a-old-unreferenced", Modified: cutoff},
	}
	remove, young := garbage(blobs, map[string]bool{"a-old-referenced": true}, cutoff)
	if young != 1 || len(remove) != 2 || remove[0].SHA256 != "a-old-unreferenced" || remove[1].SHA256 != "c-old-unreferenced" {
		t.Fatalf("remove %+v, young %d", remove, young)
	}
	if remove, _ := garbage(blobs, map[string]bool{"c-old-unreferenced": true, "a-old-unreferenced": true, "a-old-referenced": true}, cutoff); len(remove) != 0 {
		t.Fatalf("referenced blobs removed: %+v", remove)
	}
}
