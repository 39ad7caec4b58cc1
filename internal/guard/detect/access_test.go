package detect

import (
	"slices"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/watch"
)

func inDataset(in Input, ds string) Input { in.Dataset = ds; return in }

func TestFrozenFiresOnAnyChangeInAFrozenDataset(t *testing.T) {
	f := NewFrozen(map[string]bool{"release": true, "train": false})
	u := uid(1000)
	tests := []struct {
		name string
		in   Input
		want []Strength
	}{
		{"a create in a frozen dataset is Strong", inDataset(ev(watch.Create, "/r/x", u, 0), "release"), []Strength{Strong}},
		{"a modify is Strong", inDataset(ev(watch.Modify, "/r/x", u, 0), "release"), []Strength{Strong}},
		{"a close-write is Strong", inDataset(ev(watch.CloseWrite, "/r/x", u, 0), "release"), []Strength{Strong}},
		{"a rename is Strong", inDataset(rename("/r/x", "/r/y", u, 0), "release"), []Strength{Strong}},
		{"a delete by an unknown principal is Strong", inDataset(ev(watch.Delete, "/r/x", nil, 0), "release"), []Strength{Strong}},
		{"an attribute change is Weak", inDataset(ev(watch.Attrib, "/r/x", u, 0), "release"), []Strength{Weak}},
		{"a dataset set to false is not frozen", inDataset(ev(watch.Delete, "/t/x", u, 0), "train"), nil},
		{"other datasets are not frozen", inDataset(ev(watch.Delete, "/o/x", u, 0), "other"), nil},
		{"an overflow is no write", inDataset(ev(watch.Overflow, "/r", nil, 0), "release"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigs := f.Observe(tc.in)
			if got := strengths(sigs); !slices.Equal(got, tc.want) {
				t.Fatalf("strengths %v, want %v", got, tc.want)
			}
			if len(sigs) > 0 && !strings.Contains(sigs[0].Reason, "frozen dataset release") {
				t.Errorf("reason %q", sigs[0].Reason)
			}
		})
	}
}

func TestPolicyFiresOnWritesByPrincipalsNotAllowed(t *testing.T) {
	p := NewPolicy(map[string][]uint32{"train": {1001, 1000, 1000}, "locked": {}})
	tests := []struct {
		name string
		in   Input
		want []Strength
	}{
		{"an allowed uid may write", inDataset(ev(watch.CloseWrite, "/t/x", uid(1000), 0), "train"), nil},
		{"another allowed uid may delete", inDataset(ev(watch.Delete, "/t/x", uid(1001), 0), "train"), nil},
		{"a uid not allowed is Strong", inDataset(ev(watch.CloseWrite, "/t/x", uid(1002), 0), "train"), []Strength{Strong}},
		{"root is not allowed unless listed", inDataset(ev(watch.Rename, "/t/x", uid(0), 0), "train"), []Strength{Strong}},
		{"an unknown principal is Strong where there is a list", inDataset(ev(watch.Create, "/t/x", nil, 0), "train"), []Strength{Strong}},
		{"an empty list allows no one", inDataset(ev(watch.Modify, "/l/x", uid(1000), 0), "locked"), []Strength{Strong}},
		{"a dataset without a list allows everyone", inDataset(ev(watch.Delete, "/o/x", uid(1002), 0), "open"), nil},
		{"an attribute change is no write", inDataset(ev(watch.Attrib, "/t/x", uid(1002), 0), "train"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigs := p.Observe(tc.in)
			if got := strengths(sigs); !slices.Equal(got, tc.want) {
				t.Fatalf("strengths %v, want %v", got, tc.want)
			}
		})
	}
	sigs := p.Observe(inDataset(ev(watch.CloseWrite, "/t/x", uid(1002), 0), "train"))
	if want := "uid 1002 made a close-write in train, which only uid 1000, 1001 may write"; sigs[0].Reason != want {
		t.Errorf("reason %q, want %q", sigs[0].Reason, want)
	}
}
