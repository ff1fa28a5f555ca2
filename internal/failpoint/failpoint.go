// Package failpoint stops a named step so crash tests can kill the process
// exactly there. Nothing stops unless a failpoint is configured (only through
// RINGMASTER_FAILPOINT, which production never sets).
package failpoint

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
)

// Set is the configured failpoint: Name stops, marking Dir/failpoint-Name.
type Set struct {
	Name string
	Dir  string
	Log  *slog.Logger
}

// Reach stops here until ctx ends if name is the configured failpoint.
func (s Set) Reach(ctx context.Context, name string) error {
	if s.Name != name {
		return nil
	}
	s.Log.Warn("failpoint reached; waiting to be killed", "failpoint", name)
	_ = os.WriteFile(filepath.Join(s.Dir, "failpoint-"+name), nil, 0o600)
	<-ctx.Done()
	return ctx.Err()
}
