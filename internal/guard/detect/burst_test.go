package detect

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/watch"
)

// series makes n inputs, the i-th at start+i*gap seconds.
func series(n int, start, gap float64, mk func(i int, sec float64) []Input) []Input {
	var out []Input
	for i := range n {
		out = append(out, mk(i, start+float64(i)*gap)...)
	}
	return out
}

func deletes(n int, who *uint32, start, gap float64) []Input {
	return series(n, start, gap, func(i int, sec float64) []Input {
		return []Input{ev(watch.Delete, fmt.Sprintf("/d/f%05d.csv", i), who, sec)}
	})
}

func TestBurstCountsDestructiveOperationsPerPrincipal(t *testing.T) {
	u1, u2 := uid(1000), uid(1001)
	cipher := func(t *testing.T) *Content { return contentOf(t, "x.csv", encrypt(csvText(1, 40<<10))) }
	plain := func(t *testing.T) *Content { return contentOf(t, "x.csv", csvText(2, 40<<10)) }
	tests := []struct {
		name  string
		setup func(b *Burst)
		in    func(t *testing.T) []Input
		want  []Strength
	}{
		{
			name: "50 deletes in the window are within the threshold",
			in:   func(*testing.T) []Input { return deletes(50, u1, 0, 0.1) },
		},
		{
			name: "51 deletes in the window are Weak",
			in:   func(*testing.T) []Input { return deletes(51, u1, 0, 0.1) },
			want: []Strength{Weak},
		},
		{
			name: "more than four times the threshold is Strong, after Weak and a doubling",
			in:   func(*testing.T) []Input { return deletes(260, u1, 0, 0.02) },
			want: []Strength{Weak, Weak, Strong},
		},
		{
			name: "two thousand deletes in one instant give Weak, then Strong, then Decisive at once, and no more",
			in:   func(*testing.T) []Input { return deletes(2000, u1, 0, 0) },
			want: []Strength{Weak, Strong, Decisive},
		},
		{
			name: "twenty thousand deletes in two seconds give one signal per step at most, besides growing stronger",
			in:   func(*testing.T) []Input { return deletes(20000, u1, 0, 0.0001) },
			want: []Strength{Weak, Strong, Decisive, Decisive},
		},
		{
			name: "a steady rate under the threshold never fires",
			in:   func(*testing.T) []Input { return deletes(400, u1, 0, 0.25) },
		},
		{
			name: "a second burst after the window rolled fires again",
			in: func(*testing.T) []Input {
				return append(deletes(60, u1, 0, 0.05), deletes(60, u1, 30, 0.05)...)
			},
			want: []Strength{Weak, Weak},
		},
		{
			name: "principals are counted apart",
			in:   func(*testing.T) []Input { return append(deletes(40, u1, 0, 0.1), deletes(40, u2, 0, 0.1)...) },
		},
		{
			name: "unknown principals are counted as one",
			in:   func(*testing.T) []Input { return append(deletes(30, nil, 0, 0.1), deletes(30, nil, 3, 0.1)...) },
			want: []Strength{Weak},
		},
		{
			name:  "an allowance raises the thresholds",
			setup: func(b *Burst) { b.SetAllowance(u1, 100) },
			in:    func(*testing.T) []Input { return deletes(150, u1, 0, 0.05) },
		},
		{
			name:  "an allowance is per principal",
			setup: func(b *Burst) { b.SetAllowance(u2, 100) },
			in:    func(*testing.T) []Input { return deletes(60, u1, 0, 0.05) },
			want:  []Strength{Weak},
		},
		{
			name:  "a removed allowance no longer counts",
			setup: func(b *Burst) { b.SetAllowance(u1, 100); b.SetAllowance(u1, 0) },
			in:    func(*testing.T) []Input { return deletes(60, u1, 0, 0.05) },
			want:  []Strength{Weak},
		},
		{
			name: "gzip writing X.gz then deleting X is not destructive",
			in: func(*testing.T) []Input {
				return series(300, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d.csv", i)
					return []Input{ev(watch.Create, p+".gz", u1, sec), ev(watch.Delete, p, u1, sec+0.001)}
				})
			},
		},
		{
			name: "a copy to a new random extension then the delete of the original is destructive",
			in: func(*testing.T) []Input {
				return series(60, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d.csv", i)
					return []Input{ev(watch.Create, p+".x7k2q9", u1, sec), ev(watch.Delete, p, u1, sec+0.001)}
				})
			},
			want: []Strength{Weak},
		},
		{
			name: "converting X.csv to X.parquet, a format the dataset has, then deleting X.csv is not destructive",
			in: func(*testing.T) []Input {
				ins := []Input{ev(watch.Modify, "/d/old.parquet", u2, 0)}
				return append(ins, series(300, 1, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d", i)
					return []Input{ev(watch.Create, p+".parquet", u1, sec), ev(watch.Delete, p+".csv", u1, sec+0.001)}
				})...)
			},
		},
		{
			name: "replacing the extension with a ransomware one then deleting the original is destructive",
			in: func(*testing.T) []Input {
				ins := []Input{ev(watch.Modify, "/d/old.locked", u2, 0)} // even where the dataset had one
				return append(ins, series(60, 1, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d", i)
					return []Input{ev(watch.Create, p+".locked", u1, sec), ev(watch.Delete, p+".csv", u1, sec+0.001)}
				})...)
			},
			want: []Strength{Weak},
		},
		{
			name: "a temporary sibling does not excuse deleting the original",
			in: func(*testing.T) []Input {
				return series(60, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d", i)
					return []Input{ev(watch.Create, p+".tmp", u1, sec), ev(watch.Delete, p+".csv", u1, sec+0.001)}
				})
			},
			want: []Strength{Weak},
		},
		{
			name: "git checkout unlinking and creating the same paths is not destructive",
			in: func(*testing.T) []Input {
				return series(300, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/src/f%05d.go", i)
					return []Input{ev(watch.Delete, p, u1, sec), ev(watch.Create, p, u1, sec+0.001)}
				})
			},
		},
		{
			name: "temporary files created and deleted by the same principal are not destructive",
			in: func(*testing.T) []Input {
				return series(300, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/tmp/shard-%05d.tmp", i)
					return []Input{ev(watch.Create, p, u1, sec), ev(watch.Delete, p, u1, sec+0.5)}
				})
			},
		},
		{
			name: "a delete and re-create with ciphertext counts as an overwrite",
			in: func(t *testing.T) []Input {
				c := cipher(t)
				return series(60, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d.csv", i)
					return []Input{ev(watch.Delete, p, u1, sec), withContent(ev(watch.Create, p, u1, sec+0.001), c)}
				})
			},
			want: []Strength{Weak},
		},
		{
			name: "renames appending a new extension are destructive",
			in: func(*testing.T) []Input {
				return series(60, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d.csv", i)
					return []Input{rename(p, p+".locked", u1, sec)}
				})
			},
			want: []Strength{Weak},
		},
		{
			name: "renames from temporary names to an extension the dataset has are not destructive",
			in: func(*testing.T) []Input {
				ins := []Input{ev(watch.Modify, "/d/existing.csv", u2, 0)}
				return append(ins, series(300, 1, 0.01, func(i int, sec float64) []Input {
					return []Input{rename(fmt.Sprintf("/d/.tmp%05d", i), fmt.Sprintf("/d/part-%05d.csv", i), u1, sec)}
				})...)
			},
		},
		{
			name:  "renames to extensions learned from the last snapshot are not destructive",
			setup: func(b *Burst) { b.LearnExtensions("ds", ".parquet") },
			in: func(*testing.T) []Input {
				return series(300, 0, 0.01, func(i int, sec float64) []Input {
					return []Input{rename(fmt.Sprintf("/d/in-%05d.dat", i), fmt.Sprintf("/d/in-%05d.parquet", i), u1, sec)}
				})
			},
		},
		{
			name: "renames of files the principal just wrote are not destructive",
			in: func(*testing.T) []Input {
				return series(300, 0, 0.01, func(i int, sec float64) []Input {
					tmp := fmt.Sprintf("/d/.out-%05d", i)
					return []Input{ev(watch.Create, tmp, u1, sec), rename(tmp, fmt.Sprintf("/d/out-%05d.feather", i), u1, sec+0.001)}
				})
			},
		},
		{
			name: "ciphertext written to temporary files renamed over the originals is destructive",
			in: func(t *testing.T) []Input {
				c := cipher(t)
				return series(60, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d.csv", i)
					return []Input{
						ev(watch.Create, p+".tmp", u1, sec),
						withContent(ev(watch.CloseWrite, p+".tmp", u1, sec), c),
						rename(p+".tmp", p, u1, sec+0.001),
					}
				})
			},
			want: []Strength{Weak},
		},
		{
			name: "random test data written via temporary files to .bin names is not destructive",
			in: func(t *testing.T) []Input {
				c := contentOf(t, "x.bin", testkit.RandomBytes(5, 20<<10))
				return series(100, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/fixture%05d.bin", i)
					return []Input{withContent(ev(watch.Create, p+".tmp", u1, sec), c), rename(p+".tmp", p, u1, sec+0.001)}
				})
			},
		},
		{
			name: "overwrites with ciphertext are destructive",
			in: func(t *testing.T) []Input {
				c := cipher(t)
				return series(60, 0, 0.01, func(i int, sec float64) []Input {
					return []Input{withContent(ev(watch.CloseWrite, fmt.Sprintf("/d/f%05d.csv", i), u1, sec), c)}
				})
			},
			want: []Strength{Weak},
		},
		{
			name: "the same file overwritten many times counts once",
			in: func(t *testing.T) []Input {
				c := cipher(t)
				return series(100, 0, 0.01, func(i int, sec float64) []Input {
					return []Input{withContent(ev(watch.Modify, fmt.Sprintf("/d/f%05d.csv", i%10), u1, sec), c)}
				})
			},
		},
		{
			name: "overwrites with plain text are not destructive",
			in: func(t *testing.T) []Input {
				c := plain(t)
				return series(300, 0, 0.01, func(i int, sec float64) []Input {
					return []Input{withContent(ev(watch.CloseWrite, fmt.Sprintf("/d/f%05d.csv", i), u1, sec), c)}
				})
			},
		},
		{
			name: "writes to files the principal just created are not overwrites",
			in: func(t *testing.T) []Input {
				c := cipher(t)
				return series(100, 0, 0.01, func(i int, sec float64) []Input {
					p := fmt.Sprintf("/d/f%05d.csv", i)
					return []Input{ev(watch.Create, p, u1, sec), withContent(ev(watch.CloseWrite, p, u1, sec+0.001), c)}
				})
			},
		},
		{
			name: "directory deletes are not counted",
			in: func(*testing.T) []Input {
				return series(100, 0, 0.01, func(i int, sec float64) []Input {
					in := ev(watch.Delete, fmt.Sprintf("/d/dir%05d", i), u1, sec)
					in.Event.Dir = true
					return []Input{in}
				})
			},
		},
		{
			name: "deletes, renames and overwrites add up",
			in: func(t *testing.T) []Input {
				c := cipher(t)
				return series(20, 0, 0.01, func(i int, sec float64) []Input {
					return []Input{
						ev(watch.Delete, fmt.Sprintf("/d/a%05d.csv", i), u1, sec),
						rename(fmt.Sprintf("/d/b%05d.csv", i), fmt.Sprintf("/d/b%05d.csv.qq", i), u1, sec),
						withContent(ev(watch.CloseWrite, fmt.Sprintf("/d/c%05d.csv", i), u1, sec), c),
					}
				})
			},
			want: []Strength{Weak},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBurst(BurstOptions{})
			if tc.setup != nil {
				tc.setup(b)
			}
			sigs := observeAll(b, tc.in(t))
			if got := strengths(sigs); !slices.Equal(got, tc.want) {
				t.Fatalf("strengths %v, want %v; %+v", got, tc.want, sigs)
			}
			for _, s := range sigs {
				if s.Detector != "burst" || !strings.Contains(s.Reason, "destructive operations") {
					t.Errorf("signal %+v", s)
				}
			}
		})
	}
}

func TestBurstOptionsChangeWindowAndThreshold(t *testing.T) {
	b := NewBurst(BurstOptions{Window: time.Minute, Threshold: 10})
	// 11 deletes over 50 s: within a minute, over 10.
	if got := strengths(observeAll(b, deletes(11, uid(1), 0, 5))); !slices.Equal(got, []Strength{Weak}) {
		t.Errorf("strengths %v", got)
	}
}

func TestBurstIgnoresEventsOutOfTheWindowOrder(t *testing.T) {
	b := NewBurst(BurstOptions{})
	ins := deletes(30, uid(1), 100, 0.01)
	ins = append(ins, deletes(30, uid(1), 50, 0.01)...) // 50 s in the past: dropped
	if s := observeAll(b, ins); s != nil {
		t.Errorf("%+v", s)
	}
}

func TestBurstMemoryIsBounded(t *testing.T) {
	b := NewBurst(BurstOptions{})
	for i := range 2 * maxBurstPrincipals {
		b.Observe(ev(watch.Delete, "/d/x", uid(uint32(i)), float64(i)*0.001))
	}
	if len(b.per) > maxBurstPrincipals {
		t.Errorf("%d principals kept", len(b.per))
	}
	for i := range 3 * burstSetLimit {
		b.Observe(ev(watch.Create, fmt.Sprintf("/d/f%07d", i), uid(7), 1+float64(i)*1e-6))
	}
	st := b.per[principalOf(watch.Principal{UID: uid(7)})]
	if n := len(st.created.q) - st.created.head; n > burstSetLimit || len(st.created.m) > burstSetLimit {
		t.Errorf("created: queue %d, map %d", n, len(st.created.m))
	}
	if b.budget < 0 || b.budget > burstBudget {
		t.Errorf("budget %d", b.budget)
	}
}
