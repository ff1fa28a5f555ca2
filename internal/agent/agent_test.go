package agent

import (
	"testing"

	"github.com/ringmaster/ringmaster/internal/store"
)

// TestReportedIsALowerBound: a device that sent several kinds of event
// counts once, so a resume's forecast never understates exposure.
func TestReportedIsALowerBound(t *testing.T) {
	counts := []store.HealthCount{
		{Wave: 0, Outcome: "offered", Devices: 40},
		{Wave: 0, Outcome: "install_started", Devices: 35},
		{Wave: 0, Outcome: "install_succeeded", Devices: 30},
		{Wave: 0, Outcome: "install_failed", Devices: 5},
		{Wave: 1, Outcome: "offered", Devices: 10},
		{Wave: 0, Outcome: "install_failed", Cell: "oem=contoso", Devices: 5},
	}
	if got := reported(counts); got != 50 {
		t.Fatalf("reported = %d, want 50 (40 in wave 0, 10 in wave 1)", got)
	}
}
