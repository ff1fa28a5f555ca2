// Package lifecycle holds end-to-end tests of a release's life after it is
// published (deltas, rollback, promotion, clean-up) against a real server,
// kept apart from internal/app so the suites run in parallel.
package lifecycle
