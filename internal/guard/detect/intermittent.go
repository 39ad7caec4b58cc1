package detect

import (
	"fmt"
)

// Intermittent fires (Strong) on partial encryption of a text file, the
// trick that lets ransomware go ten times faster and slip past detectors
// that only ask whether a whole file looks random:
//   - striped blocks: within a block, every other stripe of 16 bytes (or
//     32, 64, ... 512) looks encrypted while the stripes between are
//     text;
//   - alternating blocks: a sampled block that looks encrypted comes
//     before one that is still text (every other 4 KiB block encrypted,
//     or only the head of the file).
//
// It looks only at files expected to be text: by extension, or, for an
// extension it does not know, because the first block is text (or
// striped). What it deliberately does not fire on: files opening with a
// known format's magic (archives hold text and compressed members side by
// side); text followed by random-looking blocks to the end, which is what
// self-extracting installers (a shell script with an archive appended)
// look like; stripes in blocks under 1 KiB, whose halves are too short
// for χ² to say anything.
type Intermittent struct{}

// NewIntermittent returns the Intermittent detector; it keeps no state.
func NewIntermittent() *Intermittent { return &Intermittent{} }

// Name is "intermittent".
func (*Intermittent) Name() string { return "intermittent" }

// Observe judges in's Content, when there is one.
func (d *Intermittent) Observe(in Input) []Signal {
	if in.Content == nil || in.Event.Dir {
		return nil
	}
	ok, reason := assessIntermittent(in.Event.Path, in.Content)
	if !ok {
		return nil
	}
	return []Signal{{Detector: d.Name(), Strength: Strong, Time: in.Event.Time, Path: in.Event.Path, Reason: reason}}
}

// Limits of the stripe analysis.
const (
	minStripedLen = 1024 // each half of a striped block is then at least 512 bytes
	// A block is a candidate for stripes when more than mixedBadPercent of
	// its bytes are not text (text has none, ciphertext ~60%, half and
	// half ~30%), and a stripe half is text with at most
	// stripeTextBadPercent.
	mixedBadPercent      = 5
	stripeTextBadPercent = 2
	// plainBadPercent: a block not random with at most this share of
	// non-text bytes counts as plain (text in a legacy 8-bit encoding too).
	plainBadPercent = 10
)

// stripeWidths are the stripe sizes tried, smallest first.
var stripeWidths = [...]int{16, 32, 64, 128, 256, 512}

// assessIntermittent reports whether c, the content of path, is a text
// file partly encrypted, and why.
func assessIntermittent(path string, c *Content) (bool, string) {
	v := view(path, c)
	if v == nil {
		return false, ""
	}
	r := &v.intermittent
	r.once.Do(func() { r.ok, r.reason = v.intermittentIn(c) })
	return r.ok, r.reason
}

// intermittentIn is assessIntermittent's judgement, for v's content c.
func (v *contentView) intermittentIn(c *Content) (bool, string) {
	path := v.path
	if v.head != fmtNone {
		return false, ""
	}
	switch v.typ.kind {
	case kindText:
	case kindUnknown:
		first := v.blocks[0]
		if !v.firstText {
			if _, ok := stripedWidthOf(c.Blocks[0], first.bad, first.random); !first.judged || !ok {
				return false, ""
			}
		}
	default:
		return false, ""
	}
	firstRandom := -1
	for i, b := range c.Blocks {
		bl := v.blocks[i]
		if !bl.judged {
			continue
		}
		if bl.random {
			if firstRandom < 0 {
				firstRandom = i
			}
			continue
		}
		if w, ok := stripedWidthOf(b, bl.bad, bl.random); ok {
			return true, fmt.Sprintf("%s file partly encrypted: at offset %d every other %d-byte stripe looks encrypted, the others are text",
				extLabel(path), c.Offsets[i], w)
		}
		if firstRandom >= 0 && bl.bad*100 <= plainBadPercent*len(b) {
			return true, fmt.Sprintf("%s file partly encrypted: the block at offset %d looks encrypted (χ² %.0f), the one at offset %d is text",
				extLabel(path), c.Offsets[firstRandom], v.blocks[firstRandom].chi2, c.Offsets[i])
		}
	}
	return false, ""
}

// stripedWidth reports whether b alternates between stripes that look
// encrypted and stripes of text, and the stripe width. Block offsets are
// multiples of 4096, so stripes counted from the block's start are the
// file's.
func stripedWidth(b []byte) (int, bool) {
	r, _ := looksRandom(b, false)
	return stripedWidthOf(b, textBad(b), r)
}

// stripedWidthOf is stripedWidth for a block whose textBad and
// randomness are known.
func stripedWidthOf(b []byte, bad int, random bool) (int, bool) {
	if len(b) < minStripedLen || random || bad*100 <= mixedBadPercent*len(b) {
		return 0, false // too short, all ciphertext, or text
	}
	var half [2][]byte
	half[0] = make([]byte, 0, len(b)/2+stripeWidths[len(stripeWidths)-1])
	half[1] = make([]byte, 0, cap(half[0]))
	for _, w := range stripeWidths {
		if len(b) < 4*w {
			break
		}
		half[0], half[1] = half[0][:0], half[1][:0]
		for off := 0; off < len(b); off += w {
			p := (off / w) & 1
			half[p] = append(half[p], b[off:min(off+w, len(b))]...)
		}
		for p := range 2 {
			enc, txt := half[p], half[1-p]
			if len(enc) < minBlockLen || len(txt) < minBlockLen {
				continue
			}
			if r, _ := looksRandom(enc, false); !r {
				continue
			}
			if stripesBad(txt, w)*100 <= stripeTextBadPercent*len(txt) {
				return w, true
			}
		}
	}
	return 0, false
}

// stripesBad is textBad summed over the w-byte stripes of b, each judged
// alone (a character may be cut at every stripe edge).
func stripesBad(b []byte, w int) int {
	bad := 0
	for off := 0; off < len(b); off += w {
		bad += textBad(b[off:min(off+w, len(b))])
	}
	return bad
}
