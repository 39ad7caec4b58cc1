package lockout

import (
	"testing"

	"golang.org/x/sys/unix"
)

// BenchmarkOpen measures an open and close by this process (a uid that is
// not locked) of a file on a protected filesystem: with no lockout, while
// another uid is locked (the marks are on: every open waits for Run), and
// outside the roots on the same filesystem while locked (Run allows it on
// the path alone).
func BenchmarkOpen(b *testing.B) {
	requireRoot(b)
	tr := newTree(b)
	l := start(b, Options{}, tr.root)
	open := func(b *testing.B, path string) {
		for b.Loop() {
			fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				b.Fatal(err)
			}
			unix.Close(fd)
		}
	}
	b.Run("no-lockout", func(b *testing.B) { open(b, tr.file) })
	if err := l.Lock(nobody); err != nil {
		b.Fatal(err)
	}
	b.Run("under-root-other-uid-locked", func(b *testing.B) { open(b, tr.file) })
	b.Run("outside-roots-other-uid-locked", func(b *testing.B) { open(b, tr.outside) })
	if err := l.Release(nobody); err != nil {
		b.Fatal(err)
	}
	b.Run("released", func(b *testing.B) { open(b, tr.file) })
}
