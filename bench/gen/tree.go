package main

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
)

const (
	minMixedFile = 64 << 10
	maxMixedFile = 6 << 20
	bufSize      = 1 << 20
)

// fileSpec is one file to write: where, how big, and what kind of content.
type fileSpec struct {
	path  string
	size  int64
	text  bool
	style textStyle
	index uint64 // seeds the file's own generator, so workers can go in any order
}

type stats struct {
	files, dirs            int
	randomBytes, textBytes int64
}

func (s *stats) add(f fileSpec) {
	s.files++
	if f.text {
		s.textBytes += f.size
	} else {
		s.randomBytes += f.size
	}
}

// planMixed lays out the mixed set: sizes drawn log-skewed between 64 KiB and
// 6 MiB (most files a few hundred KiB, a tail of large ones, ~512 KiB on
// average), spread over 6×6 directories, balanced to half random, half text.
func planMixed(total int64, seed uint64) ([]fileSpec, int) {
	rng := rand.New(rand.NewPCG(seed, 0x6d69786564)) // "mixed"
	lo, span := math.Log(minMixedFile), math.Log(maxMixedFile)-math.Log(minMixedFile)
	var specs []fileSpec
	var st stats
	for remaining := total; remaining > 0; {
		u := rng.Float64()
		size := int64(math.Exp(lo + span*math.Pow(u, 3.5)))
		if remaining-size < minMixedFile {
			size = remaining // the last file takes what is left
		}
		remaining -= size
		f := fileSpec{size: size, index: uint64(len(specs))}
		f.text = st.textBytes < st.randomBytes
		dir := fmt.Sprintf("shard-%02d/part-%02d", rng.IntN(6), rng.IntN(6))
		if f.text {
			f.style = textStyle(rng.IntN(int(numStyles)))
			f.path = fmt.Sprintf("%s/records-%05d%s", dir, f.index, f.style.ext())
		} else {
			f.path = fmt.Sprintf("%s/sample-%05d.bin", dir, f.index)
		}
		st.add(f)
		specs = append(specs, f)
	}
	return specs, 36
}

// planSmall lays out count files of 1–4 KiB, half text and half random, in
// 10×10 directories.
func planSmall(count int, seed uint64) ([]fileSpec, int) {
	rng := rand.New(rand.NewPCG(seed, 0x736d616c6c)) // "small"
	specs := make([]fileSpec, count)
	for i := range specs {
		f := fileSpec{size: 1024 + rng.Int64N(3*1024+1), index: uint64(i), text: rng.IntN(2) == 0}
		dir := fmt.Sprintf("group-%d/batch-%d", i%10, i/10%10)
		if f.text {
			f.style = textStyle(rng.IntN(int(numStyles)))
			f.path = fmt.Sprintf("%s/item-%06d%s", dir, i, f.style.ext())
		} else {
			f.path = fmt.Sprintf("%s/item-%06d.bin", dir, i)
		}
		specs[i] = f
	}
	return specs, 100
}

func writeMixed(dir string, total int64, seed uint64) (stats, error) {
	specs, dirs := planMixed(total, seed)
	return writeTree(dir, specs, dirs, seed)
}

func writeSmall(dir string, count int, seed uint64) (stats, error) {
	specs, dirs := planSmall(count, seed)
	return writeTree(dir, specs, dirs, seed)
}

// writeTree creates dir (which must be new or empty) and writes specs into it
// with one worker per CPU.
func writeTree(dir string, specs []fileSpec, dirs int, seed uint64) (stats, error) {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return stats{}, fmt.Errorf("%s is not empty: remove it or pick a new directory", dir)
	}
	st := stats{dirs: dirs}
	made := map[string]bool{}
	for _, f := range specs {
		st.add(f)
		if d := filepath.Join(dir, filepath.Dir(f.path)); !made[d] {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return st, err
			}
			made[d] = true
		}
	}

	vocab := newVocabulary(seed)
	work := make(chan fileSpec)
	errs := make(chan error, 1)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			buf := make([]byte, bufSize)
			for f := range work {
				fill := contentFor(f, vocab, seed, "file", false)
				if err := writeFile(filepath.Join(dir, f.path), f, fill, false, buf); err != nil {
					select {
					case errs <- err:
					default:
					}
				}
			}
		})
	}
	for _, f := range specs {
		work <- f
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errs:
		return st, err
	default:
		return st, nil
	}
}

// writeFile writes f's content to path: a new file, or appended to an
// existing one when appending (the content then continues, with no CSV header).
func writeFile(path string, f fileSpec, fill func([]byte), appending bool, buf []byte) error {
	flags := os.O_WRONLY | os.O_CREATE | os.O_TRUNC
	if appending {
		flags = os.O_WRONLY | os.O_APPEND
	}
	out, err := os.OpenFile(path, flags, 0o644)
	if err != nil {
		return err
	}
	for left := f.size; left > 0; {
		b := buf[:min(left, int64(len(buf)))]
		fill(b)
		if _, err := out.Write(b); err != nil {
			out.Close()
			return fmt.Errorf("write %s: %w", path, err)
		}
		left -= int64(len(b))
	}
	return out.Close()
}

// contentFor returns the generator of one file's bytes: ChaCha8 for random
// files, the text writer for text files, each seeded from (seed, tag, index).
func contentFor(f fileSpec, vocab *vocabulary, seed uint64, tag string, appending bool) func([]byte) {
	key := sha256.Sum256(fmt.Appendf(nil, "custody-bench/%d/%s/%d", seed, tag, f.index))
	if !f.text {
		c := rand.NewChaCha8(key)
		return func(b []byte) { _, _ = c.Read(b) }
	}
	rng := rand.New(rand.NewPCG(binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:16])))
	t := newTextWriter(vocab, rng, f.style)
	if appending {
		t.line = 1 << 20 // go on numbering records, without a second CSV header
	}
	return t.fill
}

// appendFiles adds n bytes to each of count files of dir's tree, chosen by
// seed; text files get more lines of their style, others random bytes.
// It returns how many files it grew.
func appendFiles(dir string, count int, n int64, seed uint64) (int, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			paths = append(paths, p)
		}
		return err
	})
	if err != nil {
		return 0, err
	}
	if len(paths) == 0 {
		return 0, fmt.Errorf("%s has no files to append to: run gen mixed or gen small first", dir)
	}
	rng := rand.New(rand.NewPCG(seed, 0x617070656e64)) // "append"
	count = min(count, len(paths))
	for i := range count { // the first count steps of a Fisher–Yates shuffle
		j := i + rng.IntN(len(paths)-i)
		paths[i], paths[j] = paths[j], paths[i]
	}
	vocab := newVocabulary(seed)
	buf := make([]byte, bufSize)
	for i, p := range paths[:count] {
		f := fileSpec{size: n, index: uint64(i), text: true}
		switch filepath.Ext(p) {
		case ".log":
			f.style = styleLog
		case ".csv":
			f.style = styleCSV
		case ".jsonl":
			f.style = styleJSONL
		default:
			f.text = false
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return i, err
		}
		fill := contentFor(f, vocab, seed, "append/"+filepath.ToSlash(rel), true)
		if err := writeFile(p, f, fill, true, buf); err != nil {
			return i, err
		}
	}
	return count, nil
}
