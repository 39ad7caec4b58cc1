package detect

import (
	"fmt"
	"testing"

	"github.com/custodyhq/custody/internal/watch"
)

// Scenarios replay the event streams of the guard drill's attacks and
// benign workloads (internal/guard/drill) through every detector, as a
// coalescing watcher reports them: a new file is one Create with its
// writes folded in (Detail "close-write") and its content sampled.

func allDetectors() []Detector {
	burst := NewBurst(BurstOptions{})
	return []Detector{
		burst, NewWipe(burst), NewExtension(), NewRansomNote(), NewRandomness(), NewIntermittent(),
		NewCanary([]string{"/d/!0000_data.csv"}), NewFrozen(nil), NewPolicy(nil),
	}
}

// scenario builds the stream of one workload over files CSVs of the
// dataset, by uid 1000, one file every 5 ms.
type scenario struct {
	t     *testing.T
	files int
	in    []Input
	sec   float64
	who   *uint32
	cache map[string]*Content
}

func newScenario(t *testing.T, files int) *scenario {
	return &scenario{t: t, files: files, who: uid(1000), cache: map[string]*Content{}}
}

func (s *scenario) path(i int) string { return fmt.Sprintf("/d/shard-%02d/part-%05d.csv", i%10, i) }

// content samples data once per key (the detectors do not keep it).
func (s *scenario) content(key, name string, data func() []byte) *Content {
	if c, ok := s.cache[key]; ok {
		return c
	}
	c := contentOf(s.t, name, data())
	s.cache[key] = c
	return c
}

func (s *scenario) add(in Input) { s.in = append(s.in, in) }

func (s *scenario) create(path string, c *Content) {
	in := withContent(ev(watch.Create, path, s.who, s.sec), c)
	in.Event.Detail = map[string]string{"modify": "1", "close-write": "1"}
	s.add(in)
}

func (s *scenario) step() { s.sec += 0.005 }

func (s *scenario) cipher() *Content {
	return s.content("cipher", "x.csv", func() []byte { return encrypt(csvText(1, 12<<10)) })
}

func (s *scenario) plain() *Content {
	return s.content("plain", "x.csv", func() []byte { return csvText(2, 12<<10) })
}

func (s *scenario) each(f func(i int, p string)) {
	for i := range s.files {
		f(i, s.path(i))
		s.step()
	}
}

func run(ins []Input) map[string]Strength {
	best := map[string]Strength{}
	for _, d := range allDetectors() {
		for _, sg := range observeAll(d, ins) {
			best[sg.Detector] = max(best[sg.Detector], sg.Strength)
		}
	}
	return best
}

func TestDrillAttacksAreSeenByTheDetectorsMeantForThem(t *testing.T) {
	tests := []struct {
		name  string
		build func(s *scenario)
		want  map[string]Strength // at least this strength per detector
	}{
		{"encrypt-rename: copies with a random extension, originals unlinked", func(s *scenario) {
			s.each(func(_ int, p string) {
				s.create(p+".k3x9q2", s.cipher())
				s.add(ev(watch.Delete, p, s.who, s.sec))
			})
		}, map[string]Strength{"burst": Strong, "extension": Strong, "randomness": Weak}},
		{"copy-delete: .enc copies, originals unlinked per directory", func(s *scenario) {
			s.each(func(_ int, p string) { s.create(p+".enc", s.cipher()) })
			s.each(func(_ int, p string) { s.add(ev(watch.Delete, p, s.who, s.sec)) })
		}, map[string]Strength{"burst": Strong, "extension": Strong}},
		{"encrypt-in-place", func(s *scenario) {
			s.each(func(_ int, p string) {
				s.add(ev(watch.Modify, p, s.who, s.sec))
				s.add(withContent(ev(watch.CloseWrite, p, s.who, s.sec), s.cipher()))
			})
		}, map[string]Strength{"burst": Strong, "randomness": Strong}},
		{"intermittent-16", func(s *scenario) {
			c := s.content("i16", "x.csv", func() []byte { return encryptStripes(csvText(3, 12<<10), 16, true) })
			s.each(func(_ int, p string) { s.add(withContent(ev(watch.CloseWrite, p, s.who, s.sec), c)) })
		}, map[string]Strength{"burst": Strong, "intermittent": Strong}},
		{"intermittent-4k", func(s *scenario) {
			c := s.content("i4k", "x.csv", func() []byte { return encryptStripes(csvText(4, 12<<10), 4096, true) })
			s.each(func(_ int, p string) { s.add(withContent(ev(watch.CloseWrite, p, s.who, s.sec), c)) })
		}, map[string]Strength{"burst": Strong, "intermittent": Strong, "randomness": Strong}},
		{"mass-delete", func(s *scenario) {
			s.each(func(_ int, p string) { s.add(ev(watch.Delete, p, s.who, s.sec)) })
		}, map[string]Strength{"burst": Strong}},
		{"ransom notes in every directory", func(s *scenario) {
			for d := range 10 {
				s.create(fmt.Sprintf("/d/shard-%02d/README_DECRYPT.txt", d), nil)
				s.step()
			}
		}, map[string]Strength{"ransom-note": Decisive}},
		{"a walker touching the canary first", func(s *scenario) {
			s.add(withContent(ev(watch.CloseWrite, "/d/!0000_data.csv", s.who, s.sec), s.cipher()))
		}, map[string]Strength{"canary": Decisive, "randomness": Strong}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, 300)
			tc.build(s)
			got := run(s.in)
			for d, want := range tc.want {
				if got[d] < want {
					t.Errorf("%s: strength %d, want at least %d (all: %v)", d, got[d], want, got)
				}
			}
		})
	}
}

func TestDrillBenignWorkloadsFireNothing(t *testing.T) {
	tests := []struct {
		name  string
		build func(s *scenario)
	}{
		{"extract-tar: many new source files", func(s *scenario) {
			c := s.content("go", "x.go", func() []byte { return pythonText(5, 3000) })
			for i := range 2000 {
				s.create(fmt.Sprintf("/d/extract/project-1.0/src/pkg%02d/file%04d.go", i%40, i), c)
				s.add(ev(watch.Attrib, fmt.Sprintf("/d/extract/project-1.0/src/pkg%02d/file%04d.go", i%40, i), s.who, s.sec))
				s.step()
			}
		}},
		{"gzip-many: X.gz written, X unlinked", func(s *scenario) {
			c := s.content("gz", "x.csv.gz", func() []byte { return gzipOf(csvText(6, 12<<10)) })
			s.each(func(_ int, p string) {
				s.create(p+".gz", c)
				s.add(ev(watch.Delete, p, s.who, s.sec))
			})
		}},
		{"checkpoints: temp file renamed over the last save", func(s *scenario) {
			w := normalFloats(7, 32<<10)
			files := map[string]*Content{
				"model.safetensors":      s.content("st32", "model.safetensors.tmp", func() []byte { return safetensorsOf("F32", len(w), fp32Bytes(w)) }),
				"model-fp16.safetensors": s.content("st16", "model.safetensors.tmp", func() []byte { return safetensorsOf("F16", len(w), fp16Bytes(w)) }),
				"embeddings.npy":         s.content("npy", "e.npy.tmp", func() []byte { return npyOf("<f4", len(w), fp32Bytes(w)) }),
				"optimizer.bin":          s.content("bin", "o.bin.tmp", func() []byte { return fp32Bytes(w) }),
			}
			for range 3 {
				for _, name := range []string{"model.safetensors", "model-fp16.safetensors", "embeddings.npy", "optimizer.bin"} {
					p := "/d/checkpoints/" + name
					s.create(p+".tmp", files[name])
					s.add(rename(p+".tmp", p, s.who, s.sec))
					s.step()
				}
			}
		}},
		{"package-cache: wheels, gzip'd bodies, sdists", func(s *scenario) {
			whl := s.content("whl", "p.whl", func() []byte { return zipOf(map[string][]byte{"pkg/core.py": pythonText(8, 9000)}) })
			body := s.content("body", "x.body", func() []byte { return gzipOf(pythonText(9, 9000)) })
			for i := range 1500 {
				switch i % 3 {
				case 0:
					s.create(fmt.Sprintf("/d/cache/wheels/%02x/pkg%d-1.0-py3-none-any.whl", i%256, i), whl)
				case 1:
					s.create(fmt.Sprintf("/d/cache/http-v2/%x/%d.body", i%16, i), body)
				default:
					s.create(fmt.Sprintf("/d/cache/sdists/%02x/pkg%d-1.0.tar.gz", i%256, i), body)
				}
				s.step()
			}
		}},
		{"git-checkout: files unlinked and written again", func(s *scenario) {
			c := s.content("go", "x.go", func() []byte { return pythonText(10, 3000) })
			for range 2 {
				for i := range 1000 {
					p := fmt.Sprintf("/d/repo/src/f%04d.go", i)
					s.add(ev(watch.Delete, p, s.who, s.sec))
					s.create(p, c)
					s.step()
				}
			}
		}},
		{"clean-csv: every CSV rewritten via a hidden temp file", func(s *scenario) {
			s.each(func(i int, p string) {
				tmp := fmt.Sprintf("%s/.%s.tmp%09d", dirName(p), baseName(p), i)
				s.create(tmp, s.plain())
				s.add(ev(watch.Attrib, tmp, s.who, s.sec))
				s.add(rename(tmp, p, s.who, s.sec))
			})
		}},
		{"a training job rewriting its metrics in place", func(s *scenario) {
			for i := range 3000 {
				s.add(withContent(ev(watch.CloseWrite, "/d/run/metrics.jsonl", s.who, s.sec), s.plain()))
				_ = i
				s.step()
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScenario(t, 2000)
			tc.build(s)
			if got := run(s.in); len(got) != 0 {
				t.Errorf("fired: %v", got)
			}
		})
	}
}
