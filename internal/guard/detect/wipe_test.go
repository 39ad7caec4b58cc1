package detect

import (
	"fmt"
	"testing"

	"github.com/custodyhq/custody/internal/watch"
)

func TestWipeSignalsEachDeletePastTheThresholdOnceExplained(t *testing.T) {
	u1, u2 := uid(1000), uid(1001)
	tests := []struct {
		name string
		in   []Input
		want int // wipe signals
	}{
		{"a few deletes are nothing", deletes(WipeThreshold, u1, 0, 0.01), 0},
		{"a wipe gives one strong signal per delete past the threshold, capped", deletes(100, u1, 0, 0.01), wipeCap},
		{"the last delete is judged by the next event", append(deletes(WipeThreshold+2, u1, 0, 0.01), ev(watch.Attrib, "/d/x", u1, 1)), 2},
		{"deletes recreated at once (git checkout) are replacements", series(100, 0, 0.01, func(i int, sec float64) []Input {
			p := fmt.Sprintf("/d/f%05d.csv", i)
			return []Input{ev(watch.Delete, p, u1, sec), ev(watch.Create, p, u1, sec)}
		}), 0},
		{"deletes after compressed copies (gzip) are replacements", series(100, 0, 0.01, func(i int, sec float64) []Input {
			p := fmt.Sprintf("/d/f%05d.csv", i)
			return []Input{ev(watch.Create, p+".gz", u1, sec), ev(watch.Delete, p, u1, sec)}
		}), 0},
		{"principals are counted apart", series(WipeThreshold, 0, 0.01, func(i int, sec float64) []Input {
			return []Input{ev(watch.Delete, fmt.Sprintf("/d/a%05d.csv", i), u1, sec), ev(watch.Delete, fmt.Sprintf("/d/b%05d.csv", i), u2, sec)}
		}), 0},
		{"a new window allows new signals", append(deletes(100, u1, 0, 0.01), deletes(100, u1, 30, 0.01)...), 2 * wipeCap},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBurst(BurstOptions{})
			w := NewWipe(b)
			n := 0
			for _, in := range tc.in {
				b.Observe(in)
				for _, s := range w.Observe(in) {
					if s.Detector != "wipe" || s.Strength != Strong {
						t.Errorf("signal %+v", s)
					}
					n++
				}
			}
			if n != tc.want {
				t.Errorf("%d wipe signals, want %d", n, tc.want)
			}
		})
	}
}
