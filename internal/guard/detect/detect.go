// Package detect holds the guard's detectors: small types that each look
// at file events (and, for written files, sampled blocks of their content)
// and report signals of ransomware or malicious manipulation. Scoring the
// signals per principal, opening incidents and responding are the guard's
// job, not this package's.
package detect

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// Input is one file event as a detector sees it.
type Input struct {
	Event   watch.Event
	Dataset string
	// Content is sampled from the file after a create, modify or
	// close-write of a regular file; nil when not sampled (other kinds,
	// directories, a file already gone).
	Content *Content
}

// Content is what was sampled of a file's bytes.
type Content struct {
	Size    int64
	Offsets []int64  // where each block starts, ascending
	Blocks  [][]byte // the blocks read, each at most BlockSize bytes

	// judged caches the blocks' judgement (see view), which Randomness,
	// Intermittent and Burst all need for the same event. Content must
	// not be changed once a detector has seen it.
	judged atomic.Pointer[contentView]
}

// BlockSize is the size of one sampled block.
const BlockSize = 4096

// Strength is how much one signal says on its own.
type Strength int

// Strengths.
const (
	Weak     Strength = 1 // suspicious, common in benign work too
	Strong   Strength = 2 // rarely benign
	Decisive Strength = 4 // never benign (a canary touched)
)

// Signal is one detector firing on one event.
type Signal struct {
	Detector string // the detector's Name
	Strength Strength
	Time     time.Time
	Path     string
	Reason   string // for people: what was seen, with the numbers
}

// Detector looks at events one at a time, in order, and returns the
// signals they raise. Detectors keep whatever state they need (sliding
// windows, what a path looked like before); they are used from one
// goroutine.
type Detector interface {
	Name() string
	Observe(in Input) []Signal
}

// principal identifies who acted, for per-principal state: the uid, or
// one shared "unknown" for every event without one.
type principal struct {
	known bool
	uid   uint32
}

func principalOf(p watch.Principal) principal {
	if p.UID == nil {
		return principal{}
	}
	return principal{known: true, uid: *p.UID}
}

func (p principal) String() string {
	if !p.known {
		return "unknown principal"
	}
	return "uid " + strconv.FormatUint(uint64(p.uid), 10)
}

// eventCount is how many operations an event stands for (Count 0 is 1).
func eventCount(e watch.Event) int { return max(e.Count, 1) }

// extOf is the lower-case extension of path's last element, without the
// dot: "csv" for "/d/Train.CSV", "gz" for "x.tar.gz", "" for "Makefile",
// ".bashrc" and "x." Extensions longer than maxExtLen are not extensions
// but dotted names ("run.2024-01-01T10:00:00") and give "".
func extOf(path string) string {
	base := baseName(path)
	i := strings.LastIndexByte(base, '.')
	if i <= 0 || i == len(base)-1 || len(base)-i-1 > maxExtLen {
		return ""
	}
	return strings.ToLower(base[i+1:])
}

// maxExtLen is the longest string extOf accepts as an extension.
const maxExtLen = 24

// stemOf is path without its last extension ("/d/x.csv" for "/d/x.csv.gz"),
// or path itself when it has none.
func stemOf(path string) string {
	if e := extOf(path); e != "" {
		return path[:len(path)-len(e)-1]
	}
	return path
}

// baseName is the last element of a slash-separated path.
func baseName(path string) string {
	return path[strings.LastIndexByte(path, '/')+1:]
}

// dirName is everything before the last element of path.
func dirName(path string) string {
	i := strings.LastIndexByte(path, '/')
	if i < 0 {
		return ""
	}
	return path[:i]
}
