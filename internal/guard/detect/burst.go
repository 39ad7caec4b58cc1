package detect

import (
	"fmt"
	"math"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// Burst defaults.
const (
	DefaultBurstWindow    = 10 * time.Second
	DefaultBurstThreshold = 50 // destructive operations per window
	strongBurstFactor     = 4  // Strong above this many times the threshold
	// Decisive above this many: hundreds of files destroyed in seconds is
	// an attack or a mistake worth stopping either way (a branch switch
	// deleting that many is the rare benign case; mark it a false
	// positive and the allowance grows).
	decisiveBurstFactor = 10
)

// Kinds of destructive operation a Burst counts.
const (
	opDelete = iota
	opRename
	opOverwrite
	burstOps
)

// Caps on Burst's memory. Per principal it remembers, for one window,
// which paths it created, deleted and overwrote; all principals together
// draw those entries from one budget of burstBudget (about 60 bytes each).
const (
	maxBurstPrincipals = 256
	burstSetLimit      = 1 << 16
	burstBudget        = 1 << 20
)

// BurstOptions configure a Burst; zero fields take the defaults.
type BurstOptions struct {
	Window    time.Duration // DefaultBurstWindow
	Threshold int           // DefaultBurstThreshold
}

// Burst counts each principal's destructive operations over a sliding
// window and fires when there are too many: Weak above the threshold,
// Strong above four times it, Decisive above ten times.
//
// Destructive are: deletes of files that were not replaced, renames to an
// extension the dataset did not have, and overwrites of existing files
// with content that looks encrypted (see Randomness and Intermittent).
//
// What it deliberately does not count:
//   - deletes of files the same principal created within the window
//     (temporary files);
//   - deletes of X after the same principal created X.gz, X.zst, X.bak
//     and the like (compressors, backup rotation), or an X.<ext> with an
//     extension the dataset already had; deletes of X.csv after it
//     created X.parquet, an extension the dataset already had (format
//     conversion); a copy to a new extension (X.csv.x7k2q, X.csv.locked,
//     X.locked) does not excuse the delete;
//   - a delete undone by the same principal creating the same path again
//     within the window (git checkout unlinks and writes each file);
//   - renames to an extension the dataset had ("tmp → part-1.parquet"),
//     and renames of files the principal just created, unless what it
//     wrote to them looked encrypted and the new name is of a text or
//     magic type (ciphertext written to a temporary file and renamed over
//     the original: counted as an overwrite);
//   - writes to files the principal created within the window, and any
//     write whose content is not random-looking.
//
// It signals at most once per principal per step (a tenth of the window),
// and then only when the count doubled since the last signal or a whole
// window passed since it; the one exception is the count crossing into
// Strong, reported at once. A principal deleting 50,000 files a second
// thus gets about one signal a second, not 50,000.
type Burst struct {
	window    time.Duration
	threshold int
	book      *extBook
	allowance map[principal]int
	per       map[principal]*burstState
	budget    int
}

type burstState struct {
	count       slidingCount
	created     recentSet // paths it created: temp files, writes during creation
	stems       recentSet // X for each X.gz it created: deletes of X are replacements
	deleted     recentSet // paths it deleted: a create of one undoes the count
	overwritten recentSet // paths counted as overwritten, counted once a window
	lastSeen    time.Time
	fired       struct {
		step     int64
		at       time.Time
		count    int
		strength Strength
	}
}

// NewBurst returns a Burst with o's window and threshold.
func NewBurst(o BurstOptions) *Burst {
	if o.Window <= 0 {
		o.Window = DefaultBurstWindow
	}
	if o.Threshold <= 0 {
		o.Threshold = DefaultBurstThreshold
	}
	if o.Window < windowSlots {
		o.Window = windowSlots // one nanosecond per step at least
	}
	return &Burst{
		window:    o.Window,
		threshold: o.Threshold,
		book:      newExtBook(o.Window),
		allowance: map[principal]int{},
		per:       map[principal]*burstState{},
		budget:    burstBudget,
	}
}

// Name is "burst".
func (b *Burst) Name() string { return "burst" }

// SetAllowance raises the thresholds of the principal with this uid (nil:
// the unknown principal) by n operations per window: what it was learned
// to do normally. n <= 0 removes the allowance.
func (b *Burst) SetAllowance(uid *uint32, n int) {
	p := principalOf(watch.Principal{UID: uid})
	if n <= 0 {
		delete(b.allowance, p)
		return
	}
	b.allowance[p] = n
}

// LearnExtensions tells b that dataset already holds files with these
// extensions (from its last snapshot, say), with or without the dot.
func (b *Burst) LearnExtensions(dataset string, exts ...string) {
	b.book.learn(dataset, exts...)
}

// Observe counts in's destructive operation, if it is one, and reports
// when its principal's count crosses a threshold.
func (b *Burst) Observe(in Input) []Signal {
	e := in.Event
	if e.Dir {
		return nil
	}
	switch e.Kind {
	case watch.Create, watch.Delete, watch.Rename, watch.Modify, watch.CloseWrite, watch.Attrib:
	default:
		return nil
	}
	p := principalOf(e.Principal)
	st := b.state(p, e.Time)
	o := burstOp{in: in, p: p, st: st, now: e.Time.UnixNano(), step: st.count.stepOf(e.Time), ext: extOf(e.Path), key: pathKey(e.Path)}
	var counted bool
	switch e.Kind {
	case watch.Create:
		counted = b.create(o)
	case watch.Delete:
		counted = b.delete(o)
	case watch.Rename:
		counted = b.rename(o)
	case watch.Modify, watch.CloseWrite:
		counted = b.write(o)
	case watch.Attrib:
		b.book.existing(in.Dataset, o.ext, p)
	}
	if !counted {
		return nil
	}
	return b.check(st, p, e, o.step)
}

// burstOp is one event as Burst's handlers see it.
type burstOp struct {
	in   Input
	p    principal
	st   *burstState
	now  int64 // the event's time, UnixNano
	step int64 // its window step
	ext  string
	key  uint64 // its path's key
}

// create handles a new file: it undoes the count of a delete of the same
// path (a replacement), counting an overwrite instead if the new content
// looks encrypted, and remembers the file as the principal's.
func (b *Burst) create(o burstOp) bool {
	e, st := o.in.Event, o.st
	counted := false
	if d, ok := st.deleted.get(o.key, o.now); ok {
		st.count.undo(d.id, opDelete, d.n)
		st.deleted.remove(o.key)
		counted = looksDestroyed(e.Path, o.in.Content) && st.overwrite(o)
	}
	// n flags content that looks encrypted, for a rename to come.
	flag := 0
	if !counted && looksDestroyed(e.Path, o.in.Content) {
		flag = 1
	}
	st.created.put(o.key, recentEntry{at: o.now, n: flag})
	if o.ext != "" && !ransomwareExts[o.ext] {
		// X is replaced by X.gz, or by X.parquet where the dataset has
		// Parquet files: a conversion (n = 1) may replace X.csv too.
		known := b.book.known(o.in.Dataset, o.ext, o.p, e.Time)
		if known || benignSuffix(o.ext) {
			conversion := 0
			if known && !copySuffix(o.ext) && !benignSuffix(o.ext) {
				conversion = 1
			}
			st.stems.put(pathKey(stemOf(e.Path)), recentEntry{at: o.now, n: conversion})
		}
	}
	b.book.fresh(o.in.Dataset, o.ext, o.p, e.Time)
	return counted
}

// delete counts the delete of a file the principal did not just create
// and did not replace with a compressed or backup copy.
func (b *Burst) delete(o burstOp) bool {
	st := o.st
	b.book.existing(o.in.Dataset, o.ext, o.p)
	if _, ok := st.created.get(o.key, o.now); ok {
		st.created.remove(o.key)
		return false
	}
	if _, ok := st.stems.get(o.key, o.now); ok {
		return false // X.gz, X.bak written: X is replaced
	}
	if c, ok := st.stems.get(pathKey(stemOf(o.in.Event.Path)), o.now); ok && c.n == 1 && o.ext != "" {
		return false // X.parquet written: X.csv is converted
	}
	n := eventCount(o.in.Event)
	st.count.add(o.step, opDelete, n)
	st.deleted.put(o.key, recentEntry{at: o.now, id: o.step, n: n})
	return true
}

// rename counts a rename of an existing file to an extension new to the
// dataset, and a rename of the principal's own file holding ciphertext to
// a name of a text or magic type.
func (b *Burst) rename(o burstOp) bool {
	e, st := o.in.Event, o.st
	oldExt := extOf(e.OldPath)
	oldKey := pathKey(e.OldPath)
	c, mine := st.created.get(oldKey, o.now)
	counted := false
	switch k := typeOf(e.Path).kind; {
	case !mine && o.ext != "" && o.ext != oldExt && !benignSuffix(o.ext) && !b.book.known(o.in.Dataset, o.ext, o.p, e.Time):
		st.count.add(o.step, opRename, eventCount(e))
		counted = true
	case mine && c.n > 0 && (k == kindText || k == kindMagic):
		counted = st.overwrite(o) // written to a temporary file, renamed over the original
	}
	if mine {
		st.created.remove(oldKey)
		st.created.put(o.key, recentEntry{at: o.now})
	}
	b.book.existing(o.in.Dataset, oldExt, o.p)
	b.book.fresh(o.in.Dataset, o.ext, o.p, e.Time)
	return counted
}

// write counts an overwrite of an existing file with content that looks
// encrypted; for the principal's own new file it only notes the content.
func (b *Burst) write(o burstOp) bool {
	e, st := o.in.Event, o.st
	b.book.existing(o.in.Dataset, o.ext, o.p)
	if o.in.Content == nil {
		return false
	}
	if c, ok := st.created.get(o.key, o.now); ok {
		if c.n == 0 && looksDestroyed(e.Path, o.in.Content) {
			st.created.put(o.key, recentEntry{at: o.now, n: 1})
		}
		return false
	}
	return looksDestroyed(e.Path, o.in.Content) && st.overwrite(o)
}

// overwrite counts o's path as overwritten, once per window.
func (st *burstState) overwrite(o burstOp) bool {
	if _, ok := st.overwritten.get(o.key, o.now); ok {
		return false
	}
	st.count.add(o.step, opOverwrite, 1)
	st.overwritten.put(o.key, recentEntry{at: o.now})
	return true
}

// check fires when st's count is over a threshold and a signal is due.
func (b *Burst) check(st *burstState, p principal, e watch.Event, step int64) []Signal {
	total := st.count.sum()
	th := b.threshold + b.allowance[p]
	var s Strength
	switch {
	case total > decisiveBurstFactor*th:
		s = Decisive
	case total > strongBurstFactor*th:
		s = Strong
	case total > th:
		s = Weak
	default:
		return nil
	}
	f := &st.fired
	if f.count > 0 && s <= f.strength {
		due := total >= 2*f.count || e.Time.Sub(f.at) >= b.window
		if step == f.step || !due {
			return nil
		}
	}
	f.step, f.at, f.count, f.strength = step, e.Time, total, s
	t := st.count.total
	return []Signal{{
		Detector: b.Name(),
		Strength: s,
		Time:     e.Time,
		Path:     e.Path,
		Reason: fmt.Sprintf("%s: %d destructive operations within %s (%d deletes, %d renames to new extensions, %d overwrites with random-looking content); threshold %d",
			p, total, b.window, t[opDelete], t[opRename], t[opOverwrite], th),
	}}
}

// state is p's state, made if need be; principals idle for a window are
// dropped when the table is full.
func (b *Burst) state(p principal, now time.Time) *burstState {
	st := b.per[p]
	if st == nil {
		if len(b.per) >= maxBurstPrincipals {
			b.evict(now)
		}
		step := int64(b.window / windowSlots)
		st = &burstState{
			count:       slidingCount{step: step},
			created:     newRecentSet(b.window, burstSetLimit, &b.budget),
			stems:       newRecentSet(b.window, burstSetLimit, &b.budget),
			deleted:     newRecentSet(b.window, burstSetLimit, &b.budget),
			overwritten: newRecentSet(b.window, burstSetLimit, &b.budget),
		}
		st.count.head = math.MinInt64 / 2 // the first event clears every slot
		b.per[p] = st
	}
	if now.After(st.lastSeen) {
		st.lastSeen = now
	}
	return st
}

// evict drops principals idle for a window, or else the one idle longest.
func (b *Burst) evict(now time.Time) {
	var oldest principal
	var oldestSeen time.Time
	first := true
	for p, st := range b.per {
		if now.Sub(st.lastSeen) >= b.window {
			b.drop(p)
			continue
		}
		if first || st.lastSeen.Before(oldestSeen) {
			oldest, oldestSeen, first = p, st.lastSeen, false
		}
	}
	if len(b.per) >= maxBurstPrincipals && !first {
		b.drop(oldest)
	}
}

func (b *Burst) drop(p principal) {
	st := b.per[p]
	for _, s := range []*recentSet{&st.created, &st.stems, &st.deleted, &st.overwritten} {
		s.release()
	}
	delete(b.per, p)
}
