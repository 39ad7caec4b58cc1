package backend

import (
	"errors"
	"fmt"
	"strings"
)

// ErrInvalidHandle is returned for a handle no backend may store: an unknown
// kind, or a name that could escape its folder or key prefix. It lives here,
// not in each backend, so that every backend refuses exactly the same names
// and a vault that works on one works on all.
var ErrInvalidHandle = errors.New("invalid object handle")

// MaxNameLen bounds object names, well above a hex SHA-256 (64) and well
// below the smallest file-name limit we care about (255 bytes).
const MaxNameLen = 128

// kinds lists every kind a vault uses; a handle with any other kind is invalid.
// "tmp" is deliberately absent: the local backend keeps its temporary files there.
var kinds = []Kind{Marker, Config, Keys, Packs, Index, Versions, Pending, Checkpoints}

// Kinds returns every kind a vault uses, so that conformance tests and
// listing tools cover new kinds without being edited.
func Kinds() []Kind { return append([]Kind(nil), kinds...) }

// Singleton reports whether objects of kind k are named by the kind alone.
func (k Kind) Singleton() bool { return k == Marker || k == Config }

// ValidateKind returns an error wrapping ErrInvalidHandle unless k is one of Kinds().
func ValidateKind(k Kind) error {
	for _, known := range kinds {
		if k == known {
			return nil
		}
	}
	return fmt.Errorf("%w: unknown kind %q", ErrInvalidHandle, string(k))
}

// Validate returns an error wrapping ErrInvalidHandle, and naming h, unless h
// can be stored safely: a known kind; an empty name for singletons; otherwise
// 1 to MaxNameLen characters from [A-Za-z0-9._-], not "." or "..". Pack names
// need at least two characters, not "..", because the local layout fans packs
// out into folders named by their first two.
func (h Handle) Validate() error {
	bad := func(why string) error {
		return fmt.Errorf("%w %q (kind %q, name %q): %s", ErrInvalidHandle, h.String(), string(h.Kind), h.Name, why)
	}
	if ValidateKind(h.Kind) != nil {
		return bad("unknown kind")
	}
	if h.Kind.Singleton() {
		if h.Name != "" {
			return bad("this kind is a single object and takes no name")
		}
		return nil
	}
	switch {
	case h.Name == "":
		return bad("the name is empty")
	case h.Name == "." || h.Name == "..":
		return bad(`"." and ".." are not object names`)
	case len(h.Name) > MaxNameLen:
		return bad(fmt.Sprintf("the name is longer than %d characters", MaxNameLen))
	case h.Kind == Packs && len(h.Name) < 2:
		return bad("pack names need at least two characters")
	case h.Kind == Packs && h.Name[:2] == "..":
		return bad(`pack names may not start with ".."`)
	}
	for _, c := range []byte(h.Name) {
		if !nameChar(c) {
			return bad(fmt.Sprintf("character %q is not allowed (only A-Z a-z 0-9 . _ -)", c))
		}
	}
	return nil
}

func nameChar(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '.' || c == '_' || c == '-'
}

// ParseHandle reads what Handle.String writes: "kind" for the singletons,
// "kind/name" otherwise. It returns an error for anything Validate refuses.
func ParseHandle(s string) (Handle, error) {
	kind, name, _ := strings.Cut(s, "/")
	h := Handle{Kind: Kind(kind), Name: name}
	if err := h.Validate(); err != nil {
		return Handle{}, err
	}
	return h, nil
}
