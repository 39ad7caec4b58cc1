package detect

import (
	"fmt"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// benchEvents is a mixed stream as a busy pipeline makes it: creates,
// writes, temp-file renames and deletes over many paths and a few uids,
// 50,000 events a second.
func benchEvents(n int) []Input {
	ins := make([]Input, 0, n)
	for i := 0; len(ins) < n; i++ {
		who := uid(uint32(1000 + i%4))
		sec := float64(len(ins)) / 50000
		p := fmt.Sprintf("/d/shard-%03d/part-%06d.csv", i%500, i)
		switch i % 4 {
		case 0:
			ins = append(ins, ev(watch.Create, p, who, sec))
		case 1:
			ins = append(ins, ev(watch.CloseWrite, p, who, sec))
		case 2:
			ins = append(ins, rename(p+".tmp", p, who, sec))
		case 3:
			ins = append(ins, ev(watch.Delete, fmt.Sprintf("/d/shard-%03d/part-%06d.csv", i%500, i-3), who, sec))
		}
	}
	return ins
}

func BenchmarkObserve(b *testing.B) {
	ins := benchEvents(1 << 16)
	for _, mk := range []func() Detector{
		func() Detector { return NewBurst(BurstOptions{}) },
		func() Detector { return NewExtension() },
		func() Detector { return NewRansomNote() },
		func() Detector { return NewCanary([]string{"/d/!0000_data.csv"}) },
		func() Detector { return NewFrozen(map[string]bool{"other": true}) },
		func() Detector { return NewPolicy(map[string][]uint32{"ds": {1000, 1001, 1002, 1003}}) },
	} {
		b.Run(mk().Name(), func(b *testing.B) {
			d := mk()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				in := ins[i%len(ins)]
				// Keep time moving forward across passes over ins.
				in.Event.Time = in.Event.Time.Add(time.Duration(i/len(ins)) * 2 * time.Second)
				d.Observe(in)
				i++
			}
		})
	}
}

func BenchmarkContent(b *testing.B) {
	cases := map[string]struct {
		file string
		data []byte
	}{
		"text":       {"a.csv", csvText(1, 1<<20)},
		"ciphertext": {"a.csv", encrypt(csvText(1, 1<<20))},
		"striped":    {"a.csv", encryptStripes(csvText(1, 1<<20), 16, true)},
		"weights":    {"w.bin", fp16Bytes(normalFloats(1, 1<<19))},
	}
	for name, tc := range cases {
		c := contentOf(b, tc.file, tc.data)
		in := withContent(ev(watch.CloseWrite, "/d/"+tc.file, uid(1), 0), c)
		for _, d := range []Detector{NewRandomness(), NewIntermittent()} {
			b.Run(name+"/"+d.Name(), func(b *testing.B) {
				for b.Loop() {
					c.judged.Store(nil) // judge afresh each time
					d.Observe(in)
				}
			})
		}
		// What one written file costs: every content detector, sharing
		// the judgement.
		b.Run(name+"/all", func(b *testing.B) {
			ds := []Detector{NewRandomness(), NewIntermittent(), NewBurst(BurstOptions{})}
			for b.Loop() {
				c.judged.Store(nil)
				for _, d := range ds {
					d.Observe(in)
				}
			}
		})
	}
}
