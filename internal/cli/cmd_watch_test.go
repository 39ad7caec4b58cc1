package cli

import (
	"fmt"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// TestEventLineKeepsItsColumns checks the appending eventLine against the
// format it replaced.
func TestEventLineKeepsItsColumns(t *testing.T) {
	uid := uint32(1000)
	at := time.Date(2026, 11, 30, 12, 0, 1, 234_000_000, time.UTC)
	for _, e := range []watch.Event{
		{Time: at, Kind: watch.Create, Path: "/d/a.csv"},
		{Time: at, Kind: watch.Rename, Path: "/d/b", OldPath: "/d/a\nb", Count: 3, Principal: watch.Principal{UID: &uid, User: "alice", PID: 42, Exe: "/usr/bin/perl"}},
		{Time: at, Kind: watch.CloseWrite, Path: "/d/ü\xff", Principal: watch.Principal{UID: &uid}},
		{Time: at, Kind: watch.Delete, Path: "/d/x", Principal: watch.Principal{UID: &uid, User: "a-very-long-user-name-beyond-the-column", PID: 7, Exe: "/bin/rm"}},
	} {
		who := "unknown"
		if p := e.Principal; p.Known() {
			who = p.User
			if who == "" {
				who = "uid " + strconv.FormatUint(uint64(*p.UID), 10)
			}
			if p.Exe != "" {
				who += " (" + filepath.Base(p.Exe) + " " + strconv.Itoa(p.PID) + ")"
			}
		}
		want := fmt.Sprintf("%s %-11s %-28s %s", e.Time.Local().Format("15:04:05.000"), e.Kind, who, displayPath(e.Path))
		if e.OldPath != "" {
			want += " (from " + displayPath(e.OldPath) + ")"
		}
		if e.Count > 1 {
			want += fmt.Sprintf(" ×%d", e.Count)
		}
		if got := eventLine(e); got != want {
			t.Errorf("eventLine:\n got %q\nwant %q", got, want)
		}
	}
}
