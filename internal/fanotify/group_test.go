package fanotify

import (
	"context"
	"errors"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/testkit"
)

// A non-blocking pipe stands in for the group: Read treats any descriptor
// alike.
func pipeGroup(t *testing.T) (*Group, int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	g, err := Open(p[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close(); unix.Close(p[1]) })
	return g, p[1]
}

func TestReadWaitsForDataAndEndsWithItsContext(t *testing.T) {
	g, w := pipeGroup(t)
	go func() {
		// Most likely after Read is waiting in poll; if not, Read finds
		// the bytes at once, and the test passes without showing the wait.
		time.Sleep(20 * time.Millisecond)
		unix.Write(w, []byte("event"))
	}()
	buf := make([]byte, 64)
	n, err := g.Read(context.Background(), buf)
	if err != nil || string(buf[:n]) != "event" {
		t.Fatalf("Read = %q, %v; want the written bytes", buf[:n], err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	stop := context.AfterFunc(ctx, g.Interrupt)
	defer stop()
	done := make(chan error, 1)
	go func() { _, err := g.Read(ctx, buf); done <- err }()
	time.Sleep(20 * time.Millisecond) // most likely waiting in poll by then; if not, Read sees ctx ended
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Read after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(testkit.Long):
		t.Fatal("Read kept waiting after its context ended")
	}
}

func TestReadReportsAClosedWriterAsUnexpectedEOF(t *testing.T) {
	g, w := pipeGroup(t)
	unix.Close(w)
	if _, err := g.Read(context.Background(), make([]byte, 8)); err == nil {
		t.Fatal("Read of an empty, closed pipe succeeded")
	}
}

func TestInterruptAfterCloseDoesNothing(t *testing.T) {
	g, _ := pipeGroup(t)
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	g.Interrupt() // must not write to a closed, perhaps reused, number
	if err := g.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}
