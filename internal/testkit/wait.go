package testkit

import (
	"testing"
	"time"
)

// Long is how long a test waits for something that should happen soon: a
// process to stop, an event to arrive, a goroutine to return. It is far
// above what a quiet machine needs, so that a machine under full load,
// running the race detector, still passes; only a hang takes that long.
const Long = 30 * time.Second

// WaitFor polls cond, more and more slowly up to every 50 ms, until it
// holds; it fails t if it does not within timeout, saying that what
// (e.g. "the process to stop") never happened. Like t.Fatal, call it from
// the test's goroutine.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for delay := time.Millisecond; !cond(); delay = min(2*delay, 50*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
		time.Sleep(delay)
	}
}
