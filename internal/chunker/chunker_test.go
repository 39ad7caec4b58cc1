package chunker

import (
	"bytes"
	"errors"
	"io"
	"slices"
	"testing"
	"testing/iotest"

	"github.com/custodyhq/custody/internal/testkit"
)

// inputCases cover the edges around Min and Max and typical data.
func inputCases() []struct {
	name string
	data []byte
	p    Params
} {
	d := DefaultParams
	return []struct {
		name string
		data []byte
		p    Params
	}{
		{"one byte", []byte{42}, d},
		{"shorter than Min", testkit.RandomBytes(2, d.Min-1), d},
		{"exactly Min", testkit.RandomBytes(3, d.Min), d},
		{"Min plus one", testkit.RandomBytes(4, d.Min+1), d},
		{"exactly Max", testkit.RandomBytes(5, d.Max), d},
		{"Max plus one", testkit.RandomBytes(6, d.Max+1), d},
		{"random 12 MiB", random32MiB()[:12<<20], d},
		{"zeros 9 MiB", make([]byte, 9<<20), d},
		{"small params random", testkit.RandomBytes(7, 100_000), smallParams},
		{"small params repeating text", bytes.Repeat([]byte("custody keeps your data "), 4000), smallParams},
		{"mid params random", testkit.RandomBytes(8, 3<<20+17), midParams},
	}
}

func TestChunksReassembleToInput(t *testing.T) {
	for _, tc := range inputCases() {
		t.Run(tc.name, func(t *testing.T) {
			chunks := mustChunk(t, tc.data, testKey(1), tc.p)
			if got := bytes.Join(chunks, nil); !bytes.Equal(got, tc.data) {
				t.Fatalf("chunks reassemble to %d bytes that differ from the %d-byte input", len(got), len(tc.data))
			}
		})
	}
}

func TestChunksStayWithinMinMaxExceptLast(t *testing.T) {
	for _, tc := range inputCases() {
		t.Run(tc.name, func(t *testing.T) {
			checkChunks(t, tc.data, mustChunk(t, tc.data, testKey(1), tc.p), tc.p)
		})
	}
}

func TestInputShorterThanMinIsOneChunk(t *testing.T) {
	for _, n := range []int{1, 100, DefaultParams.Min - 1, DefaultParams.Min} {
		chunks := mustChunk(t, testkit.RandomBytes(9, n), testKey(1), DefaultParams)
		if len(chunks) != 1 || len(chunks[0]) != n {
			t.Errorf("%d-byte input gave chunk lengths %v, want one chunk", n, lengths(chunks))
		}
	}
}

func TestEmptyInputGivesEOFImmediately(t *testing.T) {
	c, err := New(bytes.NewReader(nil), testKey(1), DefaultParams)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if chunk, err := c.Next(nil); chunk != nil || err != io.EOF {
			t.Fatalf("Next on empty input = (%d bytes, %v), want (nil, io.EOF)", len(chunk), err)
		}
	}
}

func TestSameKeyAndDataGiveSameCuts(t *testing.T) {
	data := random32MiB()
	a := cutOffsets(mustChunk(t, data, testKey(1), DefaultParams))
	b := cutOffsets(mustChunk(t, data, testKey(1), DefaultParams))
	if !slices.Equal(a, b) {
		t.Fatalf("two runs cut differently:\n%v\n%v", a, b)
	}
}

func TestDifferentKeysGiveDifferentCuts(t *testing.T) {
	for _, tc := range []struct {
		name string
		data []byte
		p    Params
	}{
		{"default params", random32MiB()[:16<<20], DefaultParams},
		{"mid params", random32MiB()[:4<<20], midParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := cutOffsets(mustChunk(t, tc.data, testKey(1), tc.p))
			b := cutOffsets(mustChunk(t, tc.data, testKey(2), tc.p))
			// The final offset is the input length under any key; ignore it.
			shared := countShared(a[:len(a)-1], b[:len(b)-1])
			if shared > len(a)/10 {
				t.Fatalf("keys 1 and 2 share %d of %d cut offsets, want nearly none", shared, len(a))
			}
		})
	}
}

func TestInsertionNearStartKeepsMostChunks(t *testing.T) {
	orig := random32MiB()
	edited := slices.Concat(orig[:1000], testkit.RandomBytes(10, 100), orig[1000:])
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"default params", DefaultParams},
		{"mid params", midParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(map[string]bool)
			for _, c := range mustChunk(t, orig, testKey(1), tc.p) {
				seen[string(c)] = true
			}
			after := mustChunk(t, edited, testKey(1), tc.p)
			shared := 0
			for _, c := range after {
				if seen[string(c)] {
					shared++
				}
			}
			if frac := float64(shared) / float64(len(after)); frac < 0.9 {
				t.Fatalf("after inserting 100 bytes, %d of %d chunks (%.1f%%) are shared, want at least 90%%",
					shared, len(after), 100*frac)
			}
		})
	}
}

func TestMeanChunkSizeOnRandomDataIsNearAvg(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
	}{
		{"default params", DefaultParams},
		{"mid params", midParams},
		{"small params", smallParams},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := random32MiB()
			if tc.p == smallParams {
				data = data[:1<<20]
			}
			chunks := mustChunk(t, data, testKey(1), tc.p)
			full := chunks[:len(chunks)-1] // the last is cut short by EOF
			total := 0
			for _, c := range full {
				total += len(c)
			}
			mean := float64(total) / float64(len(full))
			if ratio := mean / float64(tc.p.Avg); ratio < 0.75 || ratio > 1.25 {
				t.Fatalf("mean chunk size %.0f over %d chunks is %.2f×Avg, want within 25%% of %d",
					mean, len(full), ratio, tc.p.Avg)
			}
		})
	}
}

func TestCutsDoNotDependOnReadSizes(t *testing.T) {
	data := testkit.RandomBytes(11, 5<<20+3)
	want := cutOffsets(mustChunk(t, data, testKey(1), midParams))
	for _, tc := range []struct {
		name string
		r    io.Reader
	}{
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(data))},
		{"half reads", iotest.HalfReader(bytes.NewReader(data))},
		{"EOF with the last data", iotest.DataErrReader(bytes.NewReader(data))},
		{"odd sizes", &patternReader{data: data, sizes: []int{1, 7, 4096, 0, 65537, 3}}},
		{"odd sizes, EOF with data", &patternReader{data: data, sizes: []int{100_003, 5}, eofWithData: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			chunks, err := chunkAll(t, tc.r, testKey(1), midParams)
			if err != nil {
				t.Fatal(err)
			}
			checkChunks(t, data, chunks, midParams)
			if got := cutOffsets(chunks); !slices.Equal(got, want) {
				t.Fatalf("cuts differ from a whole-buffer read:\ngot  %v\nwant %v", got, want)
			}
		})
	}
}

var errDiskGone = errors.New("disk gone")

func TestReadErrorMidStreamIsReturned(t *testing.T) {
	data := testkit.RandomBytes(12, 20<<20)
	full := cutOffsets(mustChunk(t, data, testKey(1), DefaultParams))
	for _, tc := range []struct {
		name    string
		r       io.Reader
		wantErr error
	}{
		{"error after 12 MiB", io.MultiReader(bytes.NewReader(data[:12<<20]), iotest.ErrReader(errDiskGone)), errDiskGone},
		{"error with data", iotest.TimeoutReader(bytes.NewReader(data)), iotest.ErrTimeout},
		{"reader that never progresses", io.MultiReader(bytes.NewReader(data[:5<<20]), stuckReader{}), io.ErrNoProgress},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := New(tc.r, testKey(1), DefaultParams)
			if err != nil {
				t.Fatal(err)
			}
			chunks, err := drain(c)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("got error %v, want one wrapping %v", err, tc.wantErr)
			}
			// What came before the error is a prefix of the real cuts.
			if got := cutOffsets(chunks); !slices.Equal(got, full[:len(got)]) {
				t.Fatalf("chunks before the error cut at %v, want a prefix of %v", got, full)
			}
			if _, again := c.Next(nil); !errors.Is(again, tc.wantErr) {
				t.Fatalf("Next after the error returned %v, want the error again", again)
			}
		})
	}
}

// stuckReader returns (0, nil) forever.
type stuckReader struct{}

func (stuckReader) Read([]byte) (int, error) { return 0, nil }

func TestNextReusesCallerBufferWhenLargeEnough(t *testing.T) {
	data := testkit.RandomBytes(13, 1<<20)
	c, err := New(bytes.NewReader(data), testKey(1), midParams)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 17, midParams.Max)
	for {
		chunk, err := c.Next(buf)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if &chunk[0] != &buf[:1][0] {
			t.Fatalf("Next reallocated a %d-byte chunk though cap(buf) is %d", len(chunk), cap(buf))
		}
	}
	small := make([]byte, 0, 10)
	c.Reset(bytes.NewReader(data))
	chunk, err := c.Next(small)
	if err != nil || len(chunk) < midParams.Min {
		t.Fatalf("Next with a small buffer = (%d bytes, %v)", len(chunk), err)
	}
}

func TestResetChunksANewStreamLikeAFreshChunker(t *testing.T) {
	a, b := testkit.RandomBytes(14, 3<<20), testkit.RandomBytes(15, 2<<20)
	c, err := New(bytes.NewReader(a), testKey(1), midParams)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(nil); err != nil { // leave a half-read stream behind
		t.Fatal(err)
	}
	c.Reset(bytes.NewReader(b))
	got, err := drain(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := mustChunk(t, b, testKey(1), midParams); !slices.Equal(cutOffsets(got), cutOffsets(want)) {
		t.Fatalf("after Reset cuts are %v, want %v", cutOffsets(got), cutOffsets(want))
	}
}

func TestValidateRejectsBadParams(t *testing.T) {
	for _, tc := range []struct {
		name string
		p    Params
		ok   bool
	}{
		{"default", DefaultParams, true},
		{"smallest", Params{Min: 64, Avg: 128, Max: 129}, true},
		{"zero", Params{}, false},
		{"negative Min", Params{Min: -1, Avg: 256, Max: 1024}, false},
		{"Min below hash window", Params{Min: 63, Avg: 256, Max: 1024}, false},
		{"Avg not a power of two", Params{Min: 256 << 10, Avg: 1000 << 10, Max: 4 << 20}, false},
		{"Min equals Avg", Params{Min: 1 << 20, Avg: 1 << 20, Max: 4 << 20}, false},
		{"Min above Avg", Params{Min: 2 << 20, Avg: 1 << 20, Max: 4 << 20}, false},
		{"Max equals Avg", Params{Min: 256 << 10, Avg: 1 << 20, Max: 1 << 20}, false},
		{"Max too large", Params{Min: 256 << 10, Avg: 1 << 20, Max: 2 << 30}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.p.Validate()
			if tc.ok && err != nil {
				t.Fatalf("Validate(%+v) = %v, want nil", tc.p, err)
			}
			if !tc.ok && !errors.Is(err, ErrInvalidParams) {
				t.Fatalf("Validate(%+v) = %v, want ErrInvalidParams", tc.p, err)
			}
			c, err := New(bytes.NewReader(nil), testKey(1), tc.p)
			if tc.ok != (err == nil) || tc.ok != (c != nil) {
				t.Fatalf("New(%+v) = (%v, %v), want it to agree with Validate", tc.p, c != nil, err)
			}
		})
	}
}

func lengths(chunks [][]byte) []int {
	n := make([]int, len(chunks))
	for i, c := range chunks {
		n[i] = len(c)
	}
	return n
}

// countShared counts the values present in both sorted slices.
func countShared(a, b []int) int {
	n := 0
	for _, x := range a {
		if _, ok := slices.BinarySearch(b, x); ok {
			n++
		}
	}
	return n
}
