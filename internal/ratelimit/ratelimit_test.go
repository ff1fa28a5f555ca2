package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestLimiter(t *testing.T) {
	l := New(Limits{Rate: 1, Burst: 3}, time.Minute)
	now := time.Date(2026, 11, 26, 0, 0, 0, 0, time.UTC)
	for i := range 3 {
		if !l.Allow("a", now) {
			t.Fatalf("request %d within the burst refused", i)
		}
	}
	if l.Allow("a", now) {
		t.Fatal("request beyond the burst allowed")
	}
	if !l.Allow("b", now) {
		t.Fatal("keys share a bucket")
	}
	if !l.Allow("a", now.Add(time.Second)) {
		t.Fatal("the bucket did not refill")
	}
	// Idle keys are forgotten as their shards are touched again; memory
	// follows the active set.
	later := now.Add(2 * time.Minute)
	for i := range 1000 {
		l.Allow(fmt.Sprint("k", i), later)
	}
	if n := l.Len(); n != 1000 {
		t.Fatalf("%d keys kept, want the 1000 active ones", n)
	}
	off := New(Limits{}, time.Minute)
	for i := range 100 {
		if !off.Allow("a", now) {
			t.Fatalf("request %d refused: a zero rate must not limit", i+1)
		}
	}
}
