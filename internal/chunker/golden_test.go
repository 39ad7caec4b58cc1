package chunker

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

var update = flag.Bool("update", false, "rewrite testdata/golden_cuts.txt from the current code")

const goldenPath = "testdata/golden_cuts.txt"

// goldenCases are fixed (key, data, params) triples whose cut offsets are
// pinned: the cut points are part of the vault format.
var goldenCases = []struct {
	name string
	key  [32]byte
	data func() []byte
	p    Params
}{
	{"default", testKey(7), func() []byte { return testkit.RandomBytes(7, 16<<20) }, DefaultParams},
	{"mid", testKey(8), func() []byte { return testkit.RandomBytes(8, 2<<20) }, midParams},
	{"small", testKey(9), func() []byte { return testkit.RandomBytes(9, 32<<10) }, smallParams},
}

func TestCutsMatchGolden(t *testing.T) {
	got := make(map[string][]int)
	for _, tc := range goldenCases {
		got[tc.name] = cutOffsets(mustChunk(t, tc.data(), tc.key, tc.p))
	}
	if *update {
		writeGolden(t, got)
		return
	}
	want := readGolden(t)
	for _, tc := range goldenCases {
		if !slices.Equal(got[tc.name], want[tc.name]) {
			t.Errorf("case %q: cut offsets changed; this changes every chunk id in existing vaults.\n"+
				"If the format change is intended, bump the gear context version and run go test -update.\ngot  %v\nwant %v",
				tc.name, got[tc.name], want[tc.name])
		}
	}
}

func writeGolden(t *testing.T, cuts map[string][]int) {
	t.Helper()
	var b strings.Builder
	b.WriteString("# Cut offsets (end of each chunk) for the cases in golden_test.go.\n")
	b.WriteString("# Regenerate only for an intended format change: go test ./internal/chunker -run TestCutsMatchGolden -update\n")
	for _, tc := range goldenCases {
		for _, off := range cuts[tc.name] {
			fmt.Fprintf(&b, "%s %d\n", tc.name, off)
		}
	}
	if err := os.WriteFile(goldenPath, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readGolden(t *testing.T) map[string][]int {
	t.Helper()
	f, err := os.Open(goldenPath)
	if err != nil {
		t.Fatalf("%v (create it with -update)", err)
	}
	defer f.Close()
	cuts := make(map[string][]int)
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, num, ok := strings.Cut(line, " ")
		off, err := strconv.Atoi(num)
		if !ok || err != nil {
			t.Fatalf("%s: malformed line %q", goldenPath, line)
		}
		cuts[name] = append(cuts[name], off)
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	return cuts
}
