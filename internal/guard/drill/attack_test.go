package drill

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// helperArg makes the test binary run Main instead of the tests, so tests
// can start it through Command as another user.
const helperArg = "drill-helper"

func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == helperArg {
		os.Exit(Main(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// tree prepares n files in a fresh directory and returns it with the
// original contents by path, in walk order.
func tree(t *testing.T, n int) (string, []string, map[string][]byte) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := Prepare(dir, n, 7); err != nil {
		t.Fatal(err)
	}
	paths, orig := regularFiles(t, dir)
	if len(paths) != n {
		t.Fatalf("Prepare wrote %d files, want %d", len(paths), n)
	}
	return dir, paths, orig
}

func regularFiles(t *testing.T, dir string) ([]string, map[string][]byte) {
	t.Helper()
	var paths []string
	orig := map[string][]byte{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		paths = append(paths, p)
		orig[p] = b
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return paths, orig
}

// stripes reports whether, with stripe size s, every even stripe of got
// differs from want and every odd one is unchanged. Only full even stripes
// are required to differ: a short last stripe may match by chance.
func stripes(got, want []byte, s int) bool {
	if len(got) != len(want) {
		return false
	}
	for off := 0; off < len(got); off += s {
		end := min(off+s, len(got))
		same := bytes.Equal(got[off:end], want[off:end])
		if (off/s)%2 == 1 && !same || (off/s)%2 == 0 && end-off == s && same {
			return false
		}
	}
	return true
}

func TestAttackDamagesEveryFileByVariant(t *testing.T) {
	const ext = ".k3x9qz"
	tests := []struct {
		variant string
		op      string
		check   func(p string, orig []byte) string // "" if p was damaged as expected
	}{
		{EncryptRename, "rename", func(p string, orig []byte) string {
			got, err := os.ReadFile(p + ext)
			switch {
			case fileExists(p):
				return "original still there"
			case err != nil:
				return err.Error()
			case len(got) != len(orig)+22 || bytes.Equal(got[:len(orig)], orig):
				return "renamed file is not the ciphertext plus trailer"
			}
			return ""
		}},
		{EncryptInPlace, "encrypt", inPlace(0)},
		{Slow, "encrypt", inPlace(0)},
		{Intermittent16, "encrypt-partial", inPlace(16)},
		{Intermittent4K, "encrypt-partial", inPlace(4096)},
		{CopyDelete, "delete", func(p string, orig []byte) string {
			got, err := os.ReadFile(p + CopyExt)
			switch {
			case fileExists(p):
				return "original still there"
			case err != nil:
				return err.Error()
			case bytes.Equal(got[:len(orig)], orig):
				return "copy is not encrypted"
			}
			return ""
		}},
		{MassDelete, "delete", func(p string, _ []byte) string {
			if fileExists(p) {
				return "still there"
			}
			return ""
		}},
	}
	for _, tt := range tests {
		t.Run(tt.variant, func(t *testing.T) {
			t.Parallel()
			dir, paths, orig := tree(t, 200)
			var progress bytes.Buffer
			o := AttackOptions{Variant: tt.variant, Dir: dir, Ext: ext, Progress: &progress}
			if tt.variant == Slow {
				o.Rate = 10000 // the default rate is tested on its own
			}
			res, err := Attack(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			// CopyDelete unlinks a directory's originals when the walk
			// leaves it, so only the set is in walk order.
			if !equalStrings(res.Damaged, paths) && !(tt.variant == CopyDelete && sameSet(res.Damaged, paths)) {
				t.Errorf("damaged %d files, want all %d in walk order", len(res.Damaged), len(paths))
			}
			for _, p := range paths {
				if why := tt.check(p, orig[p]); why != "" {
					t.Fatalf("%s: %s", p, why)
				}
			}
			lines := progressLines(t, progress.Bytes())
			if len(lines) != len(paths) {
				t.Fatalf("%d progress lines, want %d", len(lines), len(paths))
			}
			for i, l := range lines {
				if l.Path != res.Damaged[i] || l.Op != tt.op || l.Time.IsZero() {
					t.Fatalf("progress line %d = %+v, want path %s op %s", i, l, res.Damaged[i], tt.op)
				}
			}
			if tt.variant == MassDelete {
				if left, _ := regularFiles(t, dir); len(left) != 0 {
					t.Errorf("%d files left after mass delete", len(left))
				}
			}
		})
	}
}

func inPlace(stripe int) func(string, []byte) string {
	return func(p string, orig []byte) string {
		got, err := os.ReadFile(p)
		switch {
		case err != nil:
			return err.Error()
		case len(got) != len(orig):
			return "size changed"
		case stripe == 0 && bytes.Equal(got, orig):
			return "not encrypted"
		case stripe > 0 && !stripes(got, orig, stripe):
			return "stripes not alternately encrypted and intact"
		}
		return ""
	}
}

func TestAttackRandomExtensionHasSixCharacters(t *testing.T) {
	dir, paths, _ := tree(t, 5)
	if _, err := Attack(context.Background(), AttackOptions{Variant: EncryptRename, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	after, _ := regularFiles(t, dir)
	if len(after) != len(paths) {
		t.Fatalf("%d files after, want %d", len(after), len(paths))
	}
	ext := filepath.Ext(after[0])
	if len(ext) != 7 || strings.Trim(ext[1:], "abcdefghijklmnopqrstuvwxyz0123456789") != "" {
		t.Fatalf("extension %q, want a dot and 6 characters from [a-z0-9]", ext)
	}
	for i, p := range after {
		if p != paths[i]+ext {
			t.Errorf("%s, want %s", p, paths[i]+ext)
		}
	}
}

func TestAttackHonoursRate(t *testing.T) {
	dir, _, _ := tree(t, 60)
	res, err := Attack(context.Background(), AttackOptions{Variant: EncryptInPlace, Dir: dir, Rate: 100, Max: 50})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Damaged) != 50 {
		t.Errorf("damaged %d files, want Max 50", len(res.Damaged))
	}
	if res.Elapsed < 450*time.Millisecond {
		t.Errorf("50 files at 100/s took %v, want at least 0.45 s", res.Elapsed)
	}
}

// TestAttackSlowWaitsFiveSecondsBetweenFiles cancels the attack 0.3 s
// after its first file: by then an attack that did not wait would have
// damaged all five. However slow the machine, no file may be damaged
// before its turn, 5 s after the one before.
func TestAttackSlowWaitsFiveSecondsBetweenFiles(t *testing.T) {
	dir, _, _ := tree(t, 5)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var damaged []time.Duration // since start, one per progress line
	var start time.Time
	progress := writerFunc(func(b []byte) (int, error) {
		if len(damaged) == 0 {
			time.AfterFunc(300*time.Millisecond, cancel)
		}
		damaged = append(damaged, time.Since(start))
		return len(b), nil
	})
	start = time.Now()
	res, err := Attack(ctx, AttackOptions{Variant: Slow, Dir: dir, Progress: progress})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want the context's cancellation", err)
	}
	if len(res.Damaged) == 0 || len(res.Damaged) != len(damaged) {
		t.Fatalf("damaged %d files, %d progress lines; want at least one of each, as many", len(res.Damaged), len(damaged))
	}
	for i, at := range damaged {
		if turn := time.Duration(float64(i) / SlowRate * float64(time.Second)); at < turn {
			t.Errorf("file %d damaged %v after the start, before its turn at %v", i+1, at, turn)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestAttackMaxFinishesCopyDeleteDirectory(t *testing.T) {
	dir, paths, _ := tree(t, 30)
	res, err := Attack(context.Background(), AttackOptions{Variant: CopyDelete, Dir: dir, Max: 10})
	if err != nil {
		t.Fatal(err)
	}
	if !sameSet(res.Damaged, paths[:10]) {
		t.Fatalf("damaged %v, want the first 10 files", res.Damaged)
	}
	for _, p := range paths[:10] {
		if fileExists(p) || !fileExists(p+CopyExt) {
			t.Errorf("%s: want original deleted and %s written", p, CopyExt)
		}
	}
	for _, p := range paths[10:] {
		if !fileExists(p) {
			t.Errorf("%s: deleted beyond Max", p)
		}
	}
}

func TestAttackDropsNoteInEachDirectory(t *testing.T) {
	dir, paths, _ := tree(t, 120)
	if _, err := Attack(context.Background(), AttackOptions{Variant: EncryptInPlace, Dir: dir, Note: true}); err != nil {
		t.Fatal(err)
	}
	dirs := map[string]bool{dir: true}
	for _, p := range paths {
		for d := filepath.Dir(p); d != dir; d = filepath.Dir(d) {
			dirs[d] = true
		}
	}
	for d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, NoteName))
		if err != nil || string(b) != ransomNote {
			t.Errorf("%s: no intact ransom note (%v)", d, err)
		}
	}
}

func TestAttackRejectsUnknownVariant(t *testing.T) {
	_, err := Attack(context.Background(), AttackOptions{Variant: "wipe", Dir: t.TempDir()})
	if err == nil || !strings.Contains(err.Error(), EncryptRename) {
		t.Errorf("err = %v, want one listing the variants", err)
	}
}

func progressLines(t *testing.T, b []byte) []ProgressLine {
	t.Helper()
	var lines []ProgressLine
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l ProgressLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("progress line %q: %v", sc.Text(), err)
		}
		lines = append(lines, l)
	}
	return lines
}

// sameSet reports whether a and b hold the same strings in any order.
func sameSet(a, b []string) bool {
	return equalStrings(slices.Sorted(slices.Values(a)), slices.Sorted(slices.Values(b)))
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

func equalStrings(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}
