package detect

import (
	"bytes"
	"errors"
	"fmt"
	"hash/fnv"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/custodyhq/custody/internal/watch"
)

// Canary fires (Decisive) when a canary file is modified, closed after a
// write, has its attributes changed, is renamed (from or over its name)
// or deleted. Nothing legitimate touches a canary: they are files the
// guard placed where a walker meets them first (see PlaceCanaries) and
// nobody uses.
//
// What it does not see: reads (a tool that only reads canaries, such as a
// backup or an indexer, is fine, and so is ransomware that skips them);
// a directory holding canaries renamed or deleted as a whole (ordinary
// reorganisation looks the same); creates at a canary's path (the delete
// before it fired already).
type Canary struct {
	paths map[string]bool
}

// NewCanary returns a Canary detector watching these paths (absolute,
// as events name them).
func NewCanary(paths []string) *Canary {
	m := make(map[string]bool, len(paths))
	for _, p := range paths {
		m[filepath.Clean(p)] = true
	}
	return &Canary{paths: m}
}

// Name is "canary".
func (c *Canary) Name() string { return "canary" }

// Observe fires when in's event touches a canary.
func (c *Canary) Observe(in Input) []Signal {
	e := in.Event
	switch e.Kind {
	case watch.Modify, watch.CloseWrite, watch.Attrib, watch.Delete:
	case watch.Rename:
		if c.paths[e.OldPath] {
			return c.signal(e, e.OldPath, fmt.Sprintf("renamed to %s", e.Path))
		}
	default:
		return nil
	}
	if !c.paths[e.Path] {
		return nil
	}
	what := string(e.Kind)
	if e.Kind == watch.Rename {
		what = fmt.Sprintf("replaced by a rename of %s", e.OldPath)
	}
	return c.signal(e, e.Path, what)
}

func (c *Canary) signal(e watch.Event, path, what string) []Signal {
	return []Signal{{
		Detector: c.Name(), Strength: Decisive, Time: e.Time, Path: path,
		Reason: fmt.Sprintf("%s touched the canary file %s: %s", principalOf(e.Principal), path, what),
	}}
}

// ErrCanaryChanged means a canary PlaceCanaries would have placed is
// there with other content: it was tampered with, or another file took
// its name. The file is left as it is for inspection; move it away to
// have a fresh canary placed.
var ErrCanaryChanged = errors.New("canary file changed")

// maxCanaries is how many canaries PlaceCanaries places in one directory
// at most.
const maxCanaries = 64

// canaryKinds are the names canaries take in turn, after a prefix that
// sorts them first ("!0000_"): '!' sorts before digits, letters and
// most punctuation, so walkers that sort (os.ReadDir, find | sort, most
// file managers) meet them first.
var canaryKinds = []string{
	"data.csv", "notes.txt", "manifest.json", "labels.csv", "records.jsonl", "summary.txt", "config.json", "train.csv",
}

// PlaceCanaries makes sure dir holds n canary files, the first n of
// "!0000_data.csv", "!0001_notes.txt", "!0002_manifest.json", ...
// plausible CSV, text and JSON of a few KiB whose content is a function of
// their name. It writes those missing (mode 0644), keeps those present
// with the right content, and returns all n absolute paths; those present
// with other content are kept too and reported with ErrCanaryChanged.
//
// Call it before the watch starts, or expect the guard to see its writes
// (a watcher that does not filter the guard's own events reports the new
// canaries' writes, which Canary would take for tampering).
func PlaceCanaries(dir string, n int) ([]string, error) {
	if n < 1 || n > maxCanaries {
		return nil, fmt.Errorf("place canaries in %s: want 1 to %d canaries, not %d", dir, maxCanaries, n)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("place canaries in %s: %w", dir, err)
	}
	if fi, err := os.Stat(abs); err != nil {
		return nil, fmt.Errorf("place canaries: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("place canaries in %s: not a directory", abs)
	}
	var paths []string
	var changed []string
	for i := range n {
		name := fmt.Sprintf("!%04d_%s", i, canaryKinds[i%len(canaryKinds)])
		p := filepath.Join(abs, name)
		want := canaryContent(name)
		have, err := os.ReadFile(p)
		switch {
		case err == nil:
			if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() || !bytes.Equal(have, want) {
				changed = append(changed, p)
			}
		case errors.Is(err, fs.ErrNotExist):
			if err := writeCanary(p, want); err != nil {
				return nil, err
			}
		default:
			return nil, fmt.Errorf("place canaries: %w", err)
		}
		paths = append(paths, p)
	}
	if len(changed) > 0 {
		return paths, fmt.Errorf("%w: %s (move it away to have a new one placed)", ErrCanaryChanged, strings.Join(changed, ", "))
	}
	return paths, nil
}

// writeCanary creates p with data, or fails if it exists (a race with
// another writer is not ours to win).
func writeCanary(p string, data []byte) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return fmt.Errorf("place canary: %w", err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(0o644) // whatever the umask
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return fmt.Errorf("place canary %s: %w", p, err)
	}
	return nil
}

// canaryContent is the content of the canary named name: the same for
// the same name, so PlaceCanaries can check it without keeping state.
func canaryContent(name string) []byte {
	h := fnv.New64a()
	h.Write([]byte(name))
	r := rand.New(rand.NewPCG(h.Sum64(), 0x63616e617279))
	var b bytes.Buffer
	switch {
	case strings.HasSuffix(name, ".csv"):
		b.WriteString("id,timestamp,sensor,value,quality,label\n")
		for i := range 150 + r.IntN(150) {
			fmt.Fprintf(&b, "%d,2024-%02d-%02dT%02d:%02d:%02dZ,s%03d,%.4f,%s,%s\n", 100000+i,
				1+r.IntN(12), 1+r.IntN(28), r.IntN(24), r.IntN(60), r.IntN(60),
				r.IntN(200), r.NormFloat64()*12+40, pick(r, "good", "good", "good", "suspect", "bad"),
				pick(r, "normal", "normal", "anomaly", "drift", "normal"))
		}
	case strings.HasSuffix(name, ".jsonl"):
		for i := range 80 + r.IntN(60) {
			fmt.Fprintf(&b, `{"id":%d,"user":"u%05d","event":"%s","score":%.3f,"text":"%s"}`+"\n",
				i, r.IntN(100000), pick(r, "view", "click", "purchase", "search"), r.Float64(), phrase(r, 6+r.IntN(8)))
		}
	case strings.HasSuffix(name, ".json"):
		b.WriteString("{\n  \"version\": 3,\n  \"files\": [\n")
		k := 40 + r.IntN(40)
		for i := range k {
			sep := ","
			if i == k-1 {
				sep = ""
			}
			fmt.Fprintf(&b, "    {\"path\": \"shard-%04d/part-%05d.parquet\", \"rows\": %d, \"sha256\": \"%016x%016x%016x%016x\"}%s\n",
				i/10, i, 1000+r.IntN(90000), r.Uint64(), r.Uint64(), r.Uint64(), r.Uint64(), sep)
		}
		b.WriteString("  ]\n}\n")
	default:
		for range 30 + r.IntN(30) {
			b.WriteString(phrase(r, 8+r.IntN(10)))
			b.WriteString(".\n")
		}
	}
	return b.Bytes()
}

var canaryWords = strings.Fields(`the data model training set split label feature value sensor
	batch epoch loss accuracy review sample record source quality export schema column row
	update version release report customer region quarter forecast baseline metric`)

func phrase(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = canaryWords[r.IntN(len(canaryWords))]
	}
	return strings.Join(w, " ")
}

func pick(r *rand.Rand, s ...string) string { return s[r.IntN(len(s))] }
