package detect

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/custodyhq/custody/internal/watch"
)

// isWrite reports whether k changes a tree: create, modify, close-write,
// rename or delete (not attrib).
func isWrite(k watch.Kind) bool {
	switch k {
	case watch.Create, watch.Modify, watch.CloseWrite, watch.Rename, watch.Delete:
		return true
	}
	return false
}

// Frozen fires on any change in a frozen dataset (a stage whose data
// must not move: a released model, an evaluation split): Strong for
// creates, writes, renames and deletes, Weak for attribute changes (a
// chmod or touch alters no byte). It does not judge who did it; the
// guard's own writes are not events.
//
// A rename whose old name is in a frozen dataset and new name in another
// is reported under the new name's dataset, which Frozen does not know:
// the guard must give the event to Frozen under the old dataset too.
type Frozen struct {
	frozen map[string]bool
}

// NewFrozen returns a Frozen detector for the datasets set to true.
func NewFrozen(datasets map[string]bool) *Frozen {
	m := map[string]bool{}
	for d, f := range datasets {
		if f {
			m[d] = true
		}
	}
	return &Frozen{frozen: m}
}

// Name is "frozen".
func (f *Frozen) Name() string { return "frozen" }

// Observe fires when in's event changes a frozen dataset.
func (f *Frozen) Observe(in Input) []Signal {
	if !f.frozen[in.Dataset] {
		return nil
	}
	e := in.Event
	s := Strong
	switch {
	case isWrite(e.Kind):
	case e.Kind == watch.Attrib:
		s = Weak
	default:
		return nil
	}
	return []Signal{{
		Detector: f.Name(), Strength: s, Time: e.Time, Path: e.Path,
		Reason: fmt.Sprintf("%s: %s in the frozen dataset %s", principalOf(e.Principal), e.Kind, in.Dataset),
	}}
}

// Policy fires (Strong) on a write (create, modify, close-write, rename,
// delete) to a dataset by a principal its stage policy does not allow: a
// uid not in the dataset's list, or an unknown principal when the dataset
// has a list (without attribution nobody can be shown to be allowed). A
// dataset without a list allows everyone; one with an empty list allows
// no one. Attribute changes and reads are not writes.
type Policy struct {
	allowed map[string]map[uint32]bool
	label   map[string]string // "uid 1000, 1001" for reasons
}

// NewPolicy returns a Policy detector: allowed maps datasets to the uids
// that may write to them.
func NewPolicy(allowed map[string][]uint32) *Policy {
	p := &Policy{allowed: map[string]map[uint32]bool{}, label: map[string]string{}}
	for d, uids := range allowed {
		set := map[uint32]bool{}
		var s []string
		for _, u := range slices.Sorted(slices.Values(uids)) {
			if !set[u] {
				s = append(s, strconv.FormatUint(uint64(u), 10))
			}
			set[u] = true
		}
		p.allowed[d] = set
		p.label[d] = strings.Join(s, ", ")
	}
	return p
}

// Name is "policy".
func (p *Policy) Name() string { return "policy" }

// Observe fires when in's event is a write its principal may not make.
func (p *Policy) Observe(in Input) []Signal {
	allowed, ok := p.allowed[in.Dataset]
	e := in.Event
	if !ok || !isWrite(e.Kind) {
		return nil
	}
	who := principalOf(e.Principal)
	if who.known && allowed[who.uid] {
		return nil
	}
	return []Signal{{
		Detector: p.Name(), Strength: Strong, Time: e.Time, Path: e.Path,
		Reason: fmt.Sprintf("%s made a %s in %s, which only uid %s may write", who, e.Kind, in.Dataset, orNone(p.label[in.Dataset])),
	}}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
