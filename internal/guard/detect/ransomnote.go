package detect

import (
	"fmt"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// noteSpread is in how many directories one principal must create the
// same note for the signal to be Decisive.
const noteSpread = 3

// Caps on RansomNote's memory.
const (
	maxNotePrincipals = 256
	maxNotesPerActor  = 64
)

// RansomNote fires on files named like ransom notes (the shipped list,
// ransom_notes.txt: README_DECRYPT*, HOW_TO_DECRYPT*, *DECRYPT*FILES*,
// !!!READ_ME!!!*, _readme.txt, *.hta, ... case-insensitively, spaces,
// hyphens and underscores alike), created or renamed into place: Strong;
// Decisive once one principal has made the same note name in three
// directories, as families drop a note in every directory they encrypt.
//
// What it deliberately does not fire on: plain README names (readme.txt,
// README.md), and names whose extension says source code, configuration
// or data (decrypt_files.py, HOW_TO_DECRYPT.md, restore_files.json):
// notes are text, HTML, HTA, RTF, images or PDFs. It never reads a note's
// content.
type RansomNote struct {
	per map[principal]*noteState
}

type noteState struct {
	dirs     map[string]*noteDirs // by the note's name, lower-case
	lastSeen time.Time
}

// noteDirs are the first directories a note name was seen in.
type noteDirs struct {
	n    int
	dirs [noteSpread]uint64 // path keys
}

// NewRansomNote returns a RansomNote detector.
func NewRansomNote() *RansomNote { return &RansomNote{per: map[principal]*noteState{}} }

// Name is "ransom-note".
func (r *RansomNote) Name() string { return "ransom-note" }

// Observe judges the name in's event makes.
func (r *RansomNote) Observe(in Input) []Signal {
	e := in.Event
	if e.Dir || (e.Kind != watch.Create && e.Kind != watch.Rename) {
		return nil
	}
	name := baseName(e.Path)
	if ext := extOf(name); typeByExt[ext].kind != kindUnknown && !noteExts[ext] {
		return nil
	}
	pattern := notes.match(name)
	if pattern == "" {
		return nil
	}
	p := principalOf(e.Principal)
	n := r.spread(p, normaliseNoteName(name), dirName(e.Path), e.Time)
	s := Strong
	reason := fmt.Sprintf("%s made %s, a ransom-note name (%s)", p, name, pattern)
	if n >= noteSpread {
		s = Decisive
		reason = fmt.Sprintf("%s made the ransom note %s in at least %d directories", p, name, n)
	}
	return []Signal{{Detector: r.Name(), Strength: s, Time: e.Time, Path: e.Path, Reason: reason}}
}

// noteExts are the extensions of typeByExt that a note may have.
var noteExts = map[string]bool{
	"txt": true, "text": true, "html": true, "htm": true, "xhtml": true, "rtf": true,
	"png": true, "jpg": true, "jpeg": true, "bmp": true, "gif": true, "pdf": true,
}

// spread records that p made note in dir and returns in how many
// directories p made it, counting up to noteSpread.
func (r *RansomNote) spread(p principal, note, dir string, now time.Time) int {
	st := r.per[p]
	if st == nil {
		if len(r.per) >= maxNotePrincipals {
			r.evict()
		}
		st = &noteState{dirs: map[string]*noteDirs{}}
		r.per[p] = st
	}
	if now.After(st.lastSeen) {
		st.lastSeen = now
	}
	d := st.dirs[note]
	if d == nil {
		if len(st.dirs) >= maxNotesPerActor {
			clear(st.dirs) // a principal making this many note names is caught already
		}
		d = &noteDirs{}
		st.dirs[note] = d
	}
	if d.n >= noteSpread {
		return d.n
	}
	k := pathKey(dir)
	for _, seen := range d.dirs[:d.n] {
		if seen == k {
			return d.n
		}
	}
	d.dirs[d.n] = k
	d.n++
	return d.n
}

// evict drops the principal seen longest ago.
func (r *RansomNote) evict() {
	var oldest principal
	var at time.Time
	first := true
	for p, st := range r.per {
		if first || st.lastSeen.Before(at) {
			oldest, at, first = p, st.lastSeen, false
		}
	}
	delete(r.per, oldest)
}
