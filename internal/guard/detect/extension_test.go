package detect

import (
	"slices"
	"testing"

	"github.com/custodyhq/custody/internal/watch"
)

func TestExtensionFiresOnNamesRansomwareGives(t *testing.T) {
	u1, u2 := uid(1000), uid(1001)
	dir := func(in Input) Input { in.Event.Dir = true; return in }
	tests := []struct {
		name  string
		learn []string
		in    []Input
		want  []Strength
	}{
		{
			name: "a file created with a ransomware extension is Strong",
			in:   []Input{ev(watch.Create, "/d/train.csv.locked", u1, 0)},
			want: []Strength{Strong},
		},
		{
			name: "ransomware extensions match case-insensitively",
			in:   []Input{ev(watch.Create, "/d/a.WNCRY", u1, 0), ev(watch.Create, "/d/b.LockBit", u1, 1)},
			want: []Strength{Strong, Strong},
		},
		{
			name: "a rename to a ransomware extension is Strong",
			in:   []Input{rename("/d/train.csv", "/d/train.csv.akira", u1, 0)},
			want: []Strength{Strong},
		},
		{
			name: "a rename appending a random-looking new extension is Strong",
			in:   []Input{rename("/d/report.csv", "/d/report.csv.x7k2q", u1, 0)},
			want: []Strength{Strong},
		},
		{
			name: "a rename appending a long new extension is Strong",
			in:   []Input{rename("/d/report.csv", "/d/report.csv.qwkzbnep", u1, 0)},
			want: []Strength{Strong},
		},
		{
			name: "a rename appending a new extension of letters is Weak",
			in:   []Input{rename("/d/report.csv", "/d/report.csv.qwkz", u1, 0)},
			want: []Strength{Weak},
		},
		{
			name: "each file of the same attack fires within the window",
			in: []Input{
				rename("/d/a.csv", "/d/a.csv.x7k2q", u1, 0),
				rename("/d/b.csv", "/d/b.csv.x7k2q", u1, 1),
				rename("/d/c.json", "/d/c.json.x7k2q", u1, 9),
			},
			want: []Strength{Strong, Strong, Strong},
		},
		{
			name: "an extension its principal brought in a window ago is known",
			in: []Input{
				rename("/d/a.csv", "/d/a.csv.x7k2q", u1, 0),
				rename("/d/b.csv", "/d/b.csv.x7k2q", u1, 11),
			},
			want: []Strength{Strong},
		},
		{
			name: "an extension another principal brought in is known",
			in: []Input{
				rename("/d/a.csv", "/d/a.csv.x7k2q", u1, 0),
				rename("/d/b.csv", "/d/b.csv.x7k2q", u2, 1),
			},
			want: []Strength{Strong},
		},
		{
			name: "an extension the dataset had is known",
			in: []Input{
				ev(watch.Modify, "/d/old.csv.x7k2q", u2, 0),
				rename("/d/b.csv", "/d/b.csv.x7k2q", u1, 1),
			},
		},
		{
			name:  "an extension learned from the last snapshot is known",
			learn: []string{".x7k2q"},
			in:    []Input{rename("/d/b.csv", "/d/b.csv.x7k2q", u1, 1)},
		},
		{
			name: "compression, backup, temporary and rotation suffixes are ordinary",
			in: []Input{
				rename("/d/a.csv", "/d/a.csv.gz", u1, 0),
				rename("/d/a.log", "/d/a.log.1", u1, 0),
				rename("/d/b.csv", "/d/b.csv.bak", u1, 0),
				rename("/d/c.csv", "/d/c.csv.tmp8f3k2", u1, 0),
				rename("/d/d.bin", "/d/d.bin.part", u1, 0),
			},
		},
		{
			name: "a rename changing the extension is Burst's, not an append",
			in:   []Input{rename("/d/report.csv", "/d/report.x7k2q", u1, 0)},
		},
		{
			name: "a rename appending to a name without extension is not judged",
			in:   []Input{rename("/d/Makefile", "/d/Makefile.x7k2q", u1, 0)},
		},
		{
			name: "a copy with a new extension then the delete of the original is a rename",
			in: []Input{
				ev(watch.Create, "/d/report.csv.x7k2q9", u1, 0),
				ev(watch.Delete, "/d/report.csv", u1, 0.5),
			},
			want: []Strength{Strong},
		},
		{
			name: "a copy by one principal and a delete by another are unrelated",
			in: []Input{
				ev(watch.Create, "/d/report.csv.x7k2q9", u1, 0),
				ev(watch.Delete, "/d/report.csv", u2, 0.5),
			},
		},
		{
			name: "a delete a minute after the copy is unrelated",
			in: []Input{
				ev(watch.Create, "/d/report.csv.x7k2q9", u1, 0),
				ev(watch.Delete, "/d/report.csv", u1, 61),
			},
		},
		{
			name: "gzip's copy and delete is ordinary",
			in: []Input{
				ev(watch.Create, "/d/report.csv.gz", u1, 0),
				ev(watch.Delete, "/d/report.csv", u1, 0.5),
			},
		},
		{
			name: "hidden temporary copies are ordinary (rsync, atomic writers)",
			in: []Input{
				ev(watch.Create, "/d/.report.csv.Ab3xYz", u1, 0),
				rename("/d/.report.csv.Ab3xYz", "/d/report.csv", u1, 0.5),
			},
		},
		{
			name: "directories are not judged",
			in:   []Input{dir(ev(watch.Create, "/d/x.locked", u1, 0)), dir(rename("/d/a.csv", "/d/a.csv.x7k2q", u1, 0))},
		},
		{
			name: "writes and deletes are not names made",
			in:   []Input{ev(watch.Modify, "/d/x.locked", u1, 0), ev(watch.Delete, "/d/y.locked", u1, 0)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x := NewExtension()
			x.LearnExtensions("ds", tc.learn...)
			sigs := observeAll(x, tc.in)
			if got := strengths(sigs); !slices.Equal(got, tc.want) {
				t.Fatalf("strengths %v, want %v; %+v", got, tc.want, sigs)
			}
			for _, s := range sigs {
				if s.Detector != "extension" || s.Reason == "" {
					t.Errorf("signal %+v", s)
				}
			}
		})
	}
}

func TestRandomLookingExtensions(t *testing.T) {
	for ext, want := range map[string]bool{
		"x7k2q": true, "a1b2": true, "qwkzbnep": true, "locked1": true,
		"csv": false, "qwkz": false, "h5": false, "mp4": false, "hdf5": false, "tfrecord": false, "safetensors": false, "1234": false,
	} {
		if got := randomLookingExt(ext); got != want {
			t.Errorf("randomLookingExt(%q) = %v, want %v", ext, got, want)
		}
	}
}

func TestExtOfIsTheLowerCaseLastExtension(t *testing.T) {
	for path, want := range map[string]string{
		"/d/a.CSV": "csv", "/d/a.tar.gz": "gz", "/d/Makefile": "", "/d/.bashrc": "", "/d/x.": "",
		"/d.dir/file": "", "a.b/c.d": "d", "/d/x.abcdefghijklmnopqrstuvwxyz": "",
	} {
		if got := extOf(path); got != want {
			t.Errorf("extOf(%q) = %q, want %q", path, got, want)
		}
	}
	if got := stemOf("/d/a.csv.gz"); got != "/d/a.csv" {
		t.Errorf("stemOf = %q", got)
	}
}
