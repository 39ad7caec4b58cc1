// Package watch turns file-system activity under watched trees into
// events: what happened to which path, when, and who did it (uid, user,
// pid, executable). Sources (fanotify as root, inotify otherwise) produce
// events; sinks (the ledger, the guard) consume them. Sources never know
// the sinks.
package watch

import (
	"context"
	"time"
)

// Kind is what happened.
type Kind string

// Event kinds.
const (
	Create     Kind = "create"
	Modify     Kind = "modify"
	CloseWrite Kind = "close-write"
	Rename     Kind = "rename" // Path is the new name, OldPath the old
	Delete     Kind = "delete"
	Attrib     Kind = "attrib"
	OpenDenied Kind = "open-denied"
	// Overflow: the kernel dropped events. Path is the watched root whose
	// tree must be rescanned; Count, when known, how many were lost.
	Overflow Kind = "overflow"
	// Rescan: a change found by comparing a tree with its last state after
	// an overflow, not reported by the kernel; the principal is unknown.
	Rescan Kind = "rescan"
)

// Principal is who acted. UID is nil when unknown (inotify, or a process
// that exited before it could be looked up); the fields are then empty
// rather than guessed.
type Principal struct {
	UID  *uint32 `json:"uid,omitempty"`
	User string  `json:"user,omitempty"`
	PID  int     `json:"pid,omitempty"`
	Exe  string  `json:"exe,omitempty"`
}

// Known reports whether the principal was attributed.
func (p Principal) Known() bool { return p.UID != nil }

// Event is one change under a watched tree.
type Event struct {
	Time      time.Time         `json:"time"`
	Kind      Kind              `json:"kind"`
	Path      string            `json:"path"`               // absolute; may hold any bytes but NUL
	OldPath   string            `json:"old_path,omitempty"` // Rename: the name it had
	Dir       bool              `json:"dir,omitempty"`      // the object is a directory
	Root      string            `json:"root"`               // the watched tree it is under
	Principal Principal         `json:"principal"`
	Count     int               `json:"count,omitempty"` // coalesced events this one stands for (0 = 1)
	Detail    map[string]string `json:"detail,omitempty"`
}

// Source produces events for the trees it was given until ctx is done or
// it fails. Run sends on out and does not close it; its caller owns out.
type Source interface {
	// Name is "fanotify" or "inotify".
	Name() string
	// Attributes reports whether events carry principals.
	Attributes() bool
	Run(ctx context.Context, out chan<- Event) error
}
