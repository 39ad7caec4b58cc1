package backend

import (
	"errors"
	"path"
	"strings"
	"testing"
)

func TestValidateAcceptsAndRefuses(t *testing.T) {
	tests := []struct {
		h  Handle
		ok bool
	}{
		{Handle{Kind: Marker}, true},
		{Handle{Kind: Config}, true},
		{Handle{Kind: Config, Name: "x"}, false},
		{Handle{Kind: Packs, Name: "ab"}, true},
		{Handle{Kind: Packs, Name: "a"}, false},
		{Handle{Kind: Packs, Name: "..x"}, false},
		{Handle{Kind: Index, Name: "a"}, true},
		{Handle{Kind: Index, Name: "..."}, true},
		{Handle{Kind: Index, Name: ".."}, false},
		{Handle{Kind: Index, Name: "a/b"}, false},
		{Handle{Kind: Index, Name: strings.Repeat("a", MaxNameLen)}, true},
		{Handle{Kind: Index, Name: strings.Repeat("a", MaxNameLen+1)}, false},
		{Handle{Kind: "tmp", Name: "x"}, false},
	}
	for _, tt := range tests {
		err := tt.h.Validate()
		if (err == nil) != tt.ok || err != nil && !errors.Is(err, ErrInvalidHandle) {
			t.Errorf("Validate(%q, %q) = %v, want ok %v", tt.h.Kind, tt.h.Name, err, tt.ok)
		}
	}
}

// FuzzValidateKeepsNamesInTheirFolder checks the property the local backend
// relies on: an accepted name is one path element, so no layout built from
// it can be cleaned into a different path.
func FuzzValidateKeepsNamesInTheirFolder(f *testing.F) {
	for _, s := range []string{"ab", "..", "...", "a/b", ".a", "a\x00", "é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for _, kind := range Kinds() {
			h := Handle{Kind: kind, Name: name}
			if h.Validate() != nil || kind.Singleton() {
				continue
			}
			raw := string(kind) + "/" + name
			if kind == Packs {
				raw = string(kind) + "/" + name[:2] + "/" + name
			}
			if path.Clean(raw) != raw || strings.ContainsAny(name, `/\`) {
				t.Errorf("Validate accepted %s, whose path %q is not what it seems", h, raw)
			}
		}
	})
}

func TestParseHandleInvertsString(t *testing.T) {
	for _, h := range []Handle{{Kind: Marker}, {Kind: Config}, {Kind: Packs, Name: "ab12cd"}, {Kind: Versions, Name: "0123abcd"}, {Kind: Checkpoints, Name: "ff00"}} {
		got, err := ParseHandle(h.String())
		if err != nil || got != h {
			t.Errorf("ParseHandle(%q) = %v, %v", h.String(), got, err)
		}
	}
	for _, s := range []string{"", "nope/x", "data/../x", "config/x", "data"} {
		if _, err := ParseHandle(s); err == nil {
			t.Errorf("ParseHandle(%q) accepted", s)
		}
	}
}
