package detect

import (
	"strings"
	"time"
)

// extBook learns which file extensions each dataset holds, so that a
// rename to an extension the dataset never had can be told from the
// ordinary "tmp → part-00001.parquet".
//
// An extension is known to a principal when the dataset had it before
// (seen on a file that already existed: the old name of a rename, a
// delete, a write or attribute change of a file nobody was seen creating),
// when another principal brought it in, or when the principal that
// brought it in did so at least learnAfter ago. The last two keep a
// ransomware process from teaching the book its own extension with its
// first file, while a job that starts writing a new format is no longer
// suspect after one window.
type extBook struct {
	learnAfter time.Duration
	datasets   map[string]map[string]extEntry
}

type extEntry struct {
	by          principal
	since       time.Time
	established bool
}

// Caps on what the book keeps. A dataset with more extensions than
// maxExtsPerDataset forgets those not established (an attacker giving
// every file its own random extension fills the book with them).
const (
	maxBookDatasets   = 4096
	maxExtsPerDataset = 4096
)

func newExtBook(learnAfter time.Duration) *extBook {
	return &extBook{learnAfter: learnAfter, datasets: map[string]map[string]extEntry{}}
}

// learn marks exts as long established in dataset (from a snapshot's file
// list, say). Leading dots are ignored.
func (b *extBook) learn(dataset string, exts ...string) {
	for _, e := range exts {
		e = strings.ToLower(strings.TrimPrefix(e, "."))
		if e == "" || len(e) > maxExtLen {
			continue
		}
		if m := b.dataset(dataset); m != nil {
			b.put(m, e, extEntry{established: true})
		}
	}
}

// existing records ext on a file that already existed before p's event.
func (b *extBook) existing(dataset, ext string, p principal) {
	if ext == "" {
		return
	}
	m := b.dataset(dataset)
	if m == nil {
		return
	}
	en, ok := m[ext]
	switch {
	case !ok:
		b.put(m, ext, extEntry{established: true})
	case !en.established && en.by != p:
		en.established = true
		m[ext] = en
	}
}

// fresh records ext on a name p has just made (created or renamed to).
func (b *extBook) fresh(dataset, ext string, p principal, at time.Time) {
	if ext == "" {
		return
	}
	m := b.dataset(dataset)
	if m == nil {
		return
	}
	en, ok := m[ext]
	switch {
	case !ok:
		b.put(m, ext, extEntry{by: p, since: at})
	case !en.established && en.by != p:
		en.established = true
		m[ext] = en
	}
}

// known reports whether ext counts as one dataset already had, for p at t.
func (b *extBook) known(dataset, ext string, p principal, at time.Time) bool {
	en, ok := b.datasets[dataset][ext]
	return ok && (en.established || en.by != p || at.Sub(en.since) >= b.learnAfter)
}

func (b *extBook) dataset(name string) map[string]extEntry {
	m := b.datasets[name]
	if m == nil {
		if len(b.datasets) >= maxBookDatasets {
			return nil
		}
		m = map[string]extEntry{}
		b.datasets[name] = m
	}
	return m
}

func (b *extBook) put(m map[string]extEntry, ext string, en extEntry) {
	if _, ok := m[ext]; !ok && len(m) >= maxExtsPerDataset {
		for k, v := range m {
			if !v.established {
				delete(m, k)
			}
		}
		if len(m) >= maxExtsPerDataset {
			return
		}
	}
	m[ext] = en
}

// benignSuffix reports whether appending ext to a name is ordinary work:
// compressing, archiving, backing up, writing a temporary copy,
// downloading, rotating (".1"), checksumming, signing.
func benignSuffix(ext string) bool {
	if ext == "" {
		return true
	}
	if isDigits(ext) || strings.HasPrefix(ext, "tmp") || strings.HasPrefix(ext, "temp") {
		return true // rotation (".1"), temporary names (".tmp3f9a2", as os.CreateTemp makes)
	}
	switch ext {
	case "gz", "gzip", "bz2", "xz", "zst", "zstd", "lz4", "lzma", "lz", "br", "z", "sz", "snappy",
		"zip", "7z", "tar", "tgz", "tbz2", "txz",
		"bak", "backup", "old", "orig", "prev", "save", "swp", "tmp", "temp", "part", "partial",
		"crdownload", "download", "downloading", "incomplete", "lock",
		"sig", "asc", "sha1", "sha256", "sha512", "md5", "crc",
		"done", "ok", "processed", "ready", "complete", "failed", "err":
		return true
	}
	return false
}

// randomLookingExt reports whether ext looks generated rather than
// chosen: four or more characters mixing letters and digits ("x7k2q"), or
// longer than six ("qwkzbnep"), unless it names a file type this package
// knows ("safetensors", "hdf5", "tfrecord").
func randomLookingExt(ext string) bool {
	if _, ok := typeByExt[ext]; ok {
		return false
	}
	if len(ext) > 6 {
		return true
	}
	if len(ext) < 4 {
		return false
	}
	var letters, digits bool
	for i := 0; i < len(ext); i++ {
		c := ext[i]
		letters = letters || (c >= 'a' && c <= 'z')
		digits = digits || (c >= '0' && c <= '9')
	}
	return letters && digits
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
