package detect

import (
	"fmt"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// Caps on Extension's memory: the copies each principal made to a new
// extension, remembered for copyTTL, drawn from one budget.
const (
	copyTTL              = time.Minute
	maxCopyPrincipals    = 256
	copySetLimit         = 1 << 14
	copyBudget           = 1 << 18
	extensionLearnWindow = DefaultBurstWindow
)

// Extension fires on file names that ransomware gives its work:
//   - Strong: a file created with, or renamed to, an extension from the
//     shipped list of ransomware extensions (ransomware_extensions.txt:
//     .locked, .wncry, .lockbit, .akira, ...).
//   - Weak: a rename that appends an extension the dataset never had to a
//     name that had one ("report.csv" → "report.csv.x7k2q"); Strong when
//     the appended extension looks random (four or more characters mixing
//     letters and digits, or more than six). A copy to such a name
//     followed by the delete of the original, by the same principal within
//     a minute, counts as the same rename: that is how most families
//     write (open, write new, unlink).
//
// What it deliberately does not fire on: appended extensions of
// compression, backup, temporary, partial-download, checksum and rotation
// files (.gz, .bak, .tmp, .part, .sha256, .1); extensions the dataset had
// before, or that another principal brought in, or that this principal
// brought in more than a window (10 s) ago; hidden temporary names
// (".report.csv.Ab3xYz", as rsync and atomic writers make); renames that
// change rather than append an extension (Burst counts those).
type Extension struct {
	book   *extBook
	copies map[principal]*copyState
	budget int
}

type copyState struct {
	set      recentSet // stems of copies to new extensions; tag: the extension
	lastSeen time.Time
}

// NewExtension returns an Extension detector that knows no dataset's
// extensions yet (see LearnExtensions).
func NewExtension() *Extension {
	return &Extension{book: newExtBook(extensionLearnWindow), copies: map[principal]*copyState{}, budget: copyBudget}
}

// Name is "extension".
func (x *Extension) Name() string { return "extension" }

// LearnExtensions tells x that dataset already holds files with these
// extensions (from its last snapshot, say), with or without the dot.
func (x *Extension) LearnExtensions(dataset string, exts ...string) {
	x.book.learn(dataset, exts...)
}

// Observe judges the names in's event makes.
func (x *Extension) Observe(in Input) []Signal {
	e := in.Event
	if e.Dir {
		return nil
	}
	p := principalOf(e.Principal)
	ext := extOf(e.Path)
	var sig *Signal
	switch e.Kind {
	case watch.Create:
		if ransomwareExts[ext] {
			sig = x.signal(e, Strong, fmt.Sprintf("%s created a file with the ransomware extension .%s", p, ext))
		} else if x.appendsNew(in, ext, p) && !strings.HasPrefix(baseName(e.Path), ".") {
			x.copyState(p, e.Time).set.put(pathKey(stemOf(e.Path)), recentEntry{at: e.Time.UnixNano(), tag: ext})
		}
		x.book.fresh(in.Dataset, ext, p, e.Time)

	case watch.Rename:
		oldExt := extOf(e.OldPath)
		switch {
		case ransomwareExts[ext] && ext != oldExt:
			sig = x.signal(e, Strong, fmt.Sprintf("%s renamed %s to the ransomware extension .%s", p, baseName(e.OldPath), ext))
		case oldExt != "" && appended(e.OldPath, e.Path) && x.appendsNew(in, ext, p):
			s := Weak
			if randomLookingExt(ext) {
				s = Strong
			}
			sig = x.signal(e, s, fmt.Sprintf("%s renamed %s, appending .%s, an extension new to the dataset", p, baseName(e.OldPath), ext))
		}
		x.book.existing(in.Dataset, oldExt, p)
		x.book.fresh(in.Dataset, ext, p, e.Time)

	case watch.Delete:
		x.book.existing(in.Dataset, ext, p)
		if cs := x.copies[p]; cs != nil {
			key := pathKey(e.Path)
			if c, ok := cs.set.get(key, e.Time.UnixNano()); ok {
				cs.set.remove(key)
				s := Weak
				if randomLookingExt(c.tag) {
					s = Strong
				}
				sig = x.signal(e, s, fmt.Sprintf("%s deleted %s after writing a copy with .%s appended, an extension new to the dataset", p, baseName(e.Path), c.tag))
			}
		}

	case watch.Modify, watch.CloseWrite, watch.Attrib:
		x.book.existing(in.Dataset, ext, p)
	}
	if sig == nil {
		return nil
	}
	return []Signal{*sig}
}

// appendsNew reports whether in's path is a name with an extension
// appended that is new to the dataset: the name without it has an
// extension, and the appended one is neither an ordinary suffix nor known.
func (x *Extension) appendsNew(in Input, ext string, p principal) bool {
	return ext != "" && extOf(stemOf(in.Event.Path)) != "" && !benignSuffix(ext) &&
		!x.book.known(in.Dataset, ext, p, in.Event.Time)
}

// appended reports whether name is old with ".something" added.
func appended(old, name string) bool {
	if len(name) <= len(old)+1 || !strings.HasPrefix(name, old) || name[len(old)] != '.' {
		return false
	}
	return !strings.ContainsAny(name[len(old)+1:], "./")
}

func (x *Extension) signal(e watch.Event, s Strength, reason string) *Signal {
	return &Signal{Detector: x.Name(), Strength: s, Time: e.Time, Path: e.Path, Reason: reason}
}

// copyState is p's, made if need be; when the table is full, principals
// idle for copyTTL go, or else the one idle longest.
func (x *Extension) copyState(p principal, now time.Time) *copyState {
	cs := x.copies[p]
	if cs == nil {
		if len(x.copies) >= maxCopyPrincipals {
			x.evict(now)
		}
		cs = &copyState{set: newRecentSet(copyTTL, copySetLimit, &x.budget)}
		x.copies[p] = cs
	}
	if now.After(cs.lastSeen) {
		cs.lastSeen = now
	}
	return cs
}

func (x *Extension) evict(now time.Time) {
	var oldest principal
	var oldestSeen time.Time
	first := true
	for p, cs := range x.copies {
		if now.Sub(cs.lastSeen) >= copyTTL {
			cs.set.release()
			delete(x.copies, p)
			continue
		}
		if first || cs.lastSeen.Before(oldestSeen) {
			oldest, oldestSeen, first = p, cs.lastSeen, false
		}
	}
	if len(x.copies) >= maxCopyPrincipals && !first {
		x.copies[oldest].set.release()
		delete(x.copies, oldest)
	}
}
