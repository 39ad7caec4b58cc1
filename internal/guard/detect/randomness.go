package detect

import (
	"fmt"
	"math"
	"strings"
	"sync"

	"github.com/custodyhq/custody/internal/watch"
)

// Randomness fires on a written file whose sampled blocks look encrypted
// when the file's type says they should not:
//   - Strong: a file expected to be text (by extension) whose first block
//     is not text, or one whose format opens with magic bytes (gzip, zip,
//     PNG, .npy, safetensors, Parquet, ...) whose magic is missing, when
//     its first block or at least half of its blocks look encrypted. A
//     Parquet file whose footer magic is gone while its last block looks
//     encrypted is Strong too (checked only once the file was closed).
//     A file of 128 to 511 bytes is judged whole, as one block, against a
//     looser bound (zHighSmall): text is still far from it.
//   - Weak: a file of unknown type (or a binary format without magic:
//     .bin, .onnx, .pb) whose every sampled block looks encrypted and that
//     opens with no known magic.
//
// What it deliberately does not fire on: any file that opens with a known
// format's magic, even one its extension does not promise (a .png holding
// a JPEG is mislabelled, not encrypted), since compressed and packed data
// look random by nature; model weights (fp16, bf16, fp32 tensors: their
// exponent bytes make the byte distribution far from uniform); a text
// file whose first block is still text (partial encryption is
// Intermittent's); files under 512 bytes of unknown type; files under 128
// bytes of any type.
//
// A file's type comes from its extension; a temporary, partial or backup
// suffix defers to the one before it ("train.csv.tmp3f9a2" is a CSV), so
// ciphertext written to a temporary file and renamed over the original is
// judged as what it will replace.
//
// "Looks encrypted" is Pearson's χ² of the block's byte histogram (256
// bins) within the band a uniform source gives for the block's length
// (see uniformBand): Shannon entropy alone cannot tell ciphertext from
// deflate or JPEG data, χ² comes closer, and the magic bytes settle it.
type Randomness struct{}

// NewRandomness returns the Randomness detector; it keeps no state.
func NewRandomness() *Randomness { return &Randomness{} }

// Name is "randomness".
func (*Randomness) Name() string { return "randomness" }

// Observe judges in's Content, when there is one.
func (r *Randomness) Observe(in Input) []Signal {
	if in.Content == nil || in.Event.Dir {
		return nil
	}
	s, reason := assessRandomness(in.Event.Path, in.Content, closedAfter(in.Event))
	if s == 0 {
		return nil
	}
	return []Signal{{Detector: r.Name(), Strength: s, Time: in.Event.Time, Path: in.Event.Path, Reason: reason}}
}

// closedAfter reports whether the file was closed by its writer when e
// was reported, so that a format's trailer should be in place.
func closedAfter(e watch.Event) bool {
	return e.Kind == watch.CloseWrite || (e.Kind == watch.Create && e.Detail["close-write"] != "")
}

// Thresholds of the judgement of blocks.
const (
	minBlockLen = 512 // shorter blocks are not judged, except a whole small file
	minFileLen  = 128 // smaller files are never judged
	// zHigh and zLow place the band of χ² a uniform source gives, in
	// standard deviations: P(χ²₂₅₅ > bound) ≈ 1e-4 per block.
	zHigh      = 3.7
	zHighSmall = 4.5 // files under minBlockLen: the statistic is coarser
	zLow       = -5  // below: too even to be chance (a byte counter)
)

// chiSquare is Pearson's statistic of b's byte histogram against the
// uniform distribution: Σ (Oᵢ − E)² / E = (256/n) Σ Oᵢ² − n, E = n/256.
func chiSquare(b []byte) float64 {
	// Four histograms, summed after, let successive bytes' increments run
	// without waiting on each other.
	var h [4][256]uint32
	i := 0
	for ; i+4 <= len(b); i += 4 {
		h[0][b[i]]++
		h[1][b[i+1]]++
		h[2][b[i+2]]++
		h[3][b[i+3]]++
	}
	for ; i < len(b); i++ {
		h[0][b[i]]++
	}
	var sum uint64
	for j := range 256 {
		o := uint64(h[0][j] + h[1][j] + h[2][j] + h[3][j])
		sum += o * o
	}
	n := float64(len(b))
	return 256*float64(sum)/n - n
}

// uniformBand is the range of χ² (256 bins) that n bytes from a uniform
// source fall in but for a chance of about 1e-4 above and 3e-7 below.
//
// Under uniformity χ² has k = 255 degrees of freedom: mean 255 whatever n,
// and variance 2k(1 − 1/n) (the exact multinomial variance). The
// quantiles come from the Wilson–Hilferty approximation, (χ²/k)^(1/3) ~
// N(1 − 2/9k, 2/9k), scaled by √(1 − 1/n) around the mean for the finite
// sample: [157, 347] for a 4 KiB block. n below 5 × 256 leaves fewer than
// five expected counts per bin, where the approximation coarsens: callers
// judge at least minBlockLen bytes, or use the wider zHighSmall.
func uniformBand(n int, small bool) (lo, hi float64) {
	const k = 255.0
	q := func(z float64) float64 {
		c := 2 / (9 * k)
		return k * math.Pow(1-c+z*math.Sqrt(c), 3)
	}
	f := math.Sqrt(1 - 1/float64(n))
	zh := zHigh
	if small {
		zh = zHighSmall
	}
	return k + (q(zLow)-k)*f, k + (q(zh)-k)*f
}

var band4K = func() [2]float64 { lo, hi := uniformBand(BlockSize, false); return [2]float64{lo, hi} }()

// looksRandom reports whether b's byte histogram is within the uniform
// band, and its χ².
func looksRandom(b []byte, small bool) (bool, float64) {
	x := chiSquare(b)
	lo, hi := band4K[0], band4K[1]
	if len(b) != BlockSize || small {
		lo, hi = uniformBand(len(b), small)
	}
	return x >= lo && x <= hi, x
}

// contentView is a file's sample judged block by block.
type contentView struct {
	path      string // the name it was judged under (the type comes from it)
	typ       fileType
	head      format // the magic the first block opens with
	small     bool   // a file under minBlockLen, judged whole
	blocks    []blockView
	judged    int // blocks long enough to judge
	random    int // of them, how many look encrypted
	firstText bool

	intermittent struct { // assessIntermittent's answer, worked out once
		once   sync.Once
		ok     bool
		reason string
	}
}

type blockView struct {
	judged bool
	random bool
	chi2   float64
	bad    int // textBad of the block up to 10% of it; -1 when random
}

// view judges c's blocks as the content of path; nil when there is
// nothing to judge (no content, too small, the first block not at offset
// 0). The judgement is kept in c for the next detector.
func view(path string, c *Content) *contentView {
	if c == nil || len(c.Blocks) == 0 || len(c.Offsets) != len(c.Blocks) || c.Offsets[0] != 0 || c.Size < minFileLen {
		return nil
	}
	if v := c.judged.Load(); v != nil && v.path == path {
		return v
	}
	v := &contentView{path: path, typ: typeOf(path), small: c.Size < minBlockLen, blocks: make([]blockView, len(c.Blocks))}
	first := c.Blocks[0]
	v.head = sniff(first, c.Size)
	textual := v.head == fmtNone && (v.typ.kind == kindText || v.typ.kind == kindUnknown)
	for i, b := range c.Blocks {
		if len(b) < minBlockLen && !(v.small && i == 0 && len(b) >= minFileLen) {
			if i == 0 {
				v.firstText = isText(first)
			}
			continue
		}
		r, x := looksRandom(b, v.small)
		v.blocks[i] = blockView{judged: true, random: r, chi2: x, bad: -1}
		if i == 0 || (!r && textual) {
			// Intermittent tells text (≤1%), mixed (>5%) and plain (≤10%)
			// blocks apart; beyond that the count does not matter.
			v.blocks[i].bad = textBadUpTo(b, len(b)*plainBadPercent/100)
		}
		if i == 0 {
			v.firstText = v.blocks[0].bad*100 <= len(b)
		}
		v.judged++
		if r {
			v.random++
		}
	}
	c.judged.Store(v)
	return v
}

// assessRandomness is Randomness's judgement of c, the content of path:
// the strength of the signal (0 for none) and why.
func assessRandomness(path string, c *Content, closed bool) (Strength, string) {
	v := view(path, c)
	if v == nil || v.judged == 0 {
		return 0, ""
	}
	if v.head != fmtNone {
		if v.head == fmtParquet && v.typ.accepts(fmtParquet) && closed {
			last := len(c.Blocks) - 1
			tail := c.Blocks[last]
			j := last // the last block judged (a short tail is not)
			for j > 0 && !v.blocks[j].judged {
				j--
			}
			if c.Offsets[last]+int64(len(tail)) == c.Size && !parquetTail(tail) && v.blocks[j].random {
				return Strong, fmt.Sprintf("Parquet file lost its footer magic and its block at offset %d looks encrypted (χ² %.0f)", c.Offsets[j], v.blocks[j].chi2)
			}
		}
		return 0, ""
	}
	firstRandom := v.blocks[0].judged && v.blocks[0].random
	most := v.random > 0 && 2*v.random >= v.judged
	switch v.typ.kind {
	case kindText:
		if !v.firstText && (firstRandom || most) {
			return Strong, fmt.Sprintf("%s file is not text: %s", extLabel(path), v.summary())
		}
	case kindMagic:
		if firstRandom || most {
			return Strong, fmt.Sprintf("%s file without its %s magic: %s", extLabel(path), formatsLabel(v.typ.formats), v.summary())
		}
	default:
		if !v.small && v.random == v.judged && !v.firstText {
			return Weak, fmt.Sprintf("file of unknown type with no known magic: %s", v.summary())
		}
	}
	return 0, ""
}

// looksDestroyed reports whether content written to path looks like
// ciphertext where the file's type says it should not: what Randomness
// or Intermittent would fire on.
func looksDestroyed(path string, c *Content) bool {
	if c == nil {
		return false
	}
	if s, _ := assessRandomness(path, c, false); s > 0 {
		return true
	}
	ok, _ := assessIntermittent(path, c)
	return ok
}

func (v *contentView) summary() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d sampled blocks look encrypted (χ²", v.random, v.judged)
	sep := " "
	for _, bl := range v.blocks {
		if bl.judged {
			fmt.Fprintf(&b, "%s%.0f", sep, bl.chi2)
			sep = ", "
		}
	}
	lo, hi := uniformBand(BlockSize, false)
	fmt.Fprintf(&b, "; uniform bytes give %.0f-%.0f for 4 KiB)", lo, hi)
	return b.String()
}

func extLabel(path string) string {
	if e := extOf(path); e != "" {
		return "." + e
	}
	return "extensionless"
}

func formatsLabel(fs []format) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = f.String()
	}
	return strings.Join(s, " or ")
}
