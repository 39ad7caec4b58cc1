package main

import (
	"math/rand/v2"
	"strconv"
)

// vocabSize words make up all generated text: enough that zstd cannot learn
// them all at once, few enough that text still compresses like real logs.
const vocabSize = 4000

// zipfBits sets the resolution of the word-frequency table.
const zipfBits = 16

// textStyle is the shape of a text file: its lines look like one of these.
type textStyle int

const (
	styleLog textStyle = iota
	styleCSV
	styleJSONL
	numStyles
)

func (s textStyle) ext() string {
	return [...]string{".log", ".csv", ".jsonl"}[s]
}

// vocabulary is a fixed set of pseudo-English words and a table that draws
// them with a Zipf-like (s≈1) frequency, as words in real text are drawn.
type vocabulary struct {
	words [][]byte
	zipf  []uint16 // 1<<zipfBits entries, each a word index
}

// englishLetters holds each letter about as often as it occurs in English, so
// generated words have realistic letter statistics for an entropy coder.
var englishLetters = func() []byte {
	freq := map[byte]int{
		'e': 127, 't': 91, 'a': 82, 'o': 75, 'i': 70, 'n': 67, 's': 63, 'h': 61, 'r': 60,
		'd': 43, 'l': 40, 'c': 28, 'u': 28, 'm': 24, 'w': 24, 'f': 22, 'g': 20, 'y': 20,
		'p': 19, 'b': 15, 'v': 10, 'k': 8, 'j': 2, 'x': 2, 'q': 1, 'z': 1,
	}
	var out []byte
	for c := byte('a'); c <= 'z'; c++ {
		for range freq[c] {
			out = append(out, c)
		}
	}
	return out
}()

// newVocabulary makes the same vocabSize distinct words for the same seed.
func newVocabulary(seed uint64) *vocabulary {
	rng := rand.New(rand.NewPCG(seed, 0x766f636162)) // "vocab"
	v := &vocabulary{}
	seen := make(map[string]bool, vocabSize)
	for len(v.words) < vocabSize {
		n := 2 + rng.IntN(4) + rng.IntN(5) // 2..10 letters, most 4..7
		w := make([]byte, n)
		for i := range w {
			w[i] = englishLetters[rng.IntN(len(englishLetters))]
		}
		if !seen[string(w)] {
			seen[string(w)] = true
			v.words = append(v.words, w)
		}
	}
	// Word r gets probability ∝ 1/(r+1); slot j of the table holds the word
	// whose cumulative probability first reaches (j+½)/len(table).
	var total float64
	for r := range vocabSize {
		total += 1 / float64(r+1)
	}
	v.zipf = make([]uint16, 1<<zipfBits)
	cum, r := 1/total, 0
	for j := range v.zipf {
		for (float64(j)+0.5)/float64(len(v.zipf)) > cum && r < vocabSize-1 {
			r++
			cum += 1 / (float64(r+1) * total)
		}
		v.zipf[j] = uint16(r)
	}
	return v
}

// textWriter produces lines of one style from a per-file generator.
type textWriter struct {
	v     *vocabulary
	rng   *rand.Rand
	style textStyle
	line  int64
	clock int64 // milliseconds since the Unix epoch, advancing line by line
	bits  uint64
	nbits int

	scratch []byte // the line being copied out
	pending []byte // the part of scratch that did not fit the last buffer
}

func newTextWriter(v *vocabulary, rng *rand.Rand, style textStyle) *textWriter {
	return &textWriter{v: v, rng: rng, style: style, clock: 1714521600000 + rng.Int64N(1e10)}
}

// word draws one word; it spends 16 random bits per word, four per Uint64.
func (t *textWriter) word() []byte {
	if t.nbits < zipfBits {
		t.bits, t.nbits = t.rng.Uint64(), 64
	}
	i := t.v.zipf[t.bits&(1<<zipfBits-1)]
	t.bits >>= zipfBits
	t.nbits -= zipfBits
	return t.v.words[i]
}

// label draws one of the n most common words, as a categorical column would.
func (t *textWriter) label(n int) []byte {
	return t.v.words[t.rng.IntN(n)]
}

func (t *textWriter) words(b []byte, n int, sep byte) []byte {
	for i := range n {
		if i > 0 {
			b = append(b, sep)
		}
		b = append(b, t.word()...)
	}
	return b
}

var levels = [][]byte{[]byte("INFO"), []byte("INFO"), []byte("INFO"), []byte("DEBUG"), []byte("WARN"), []byte("ERROR")}

// appendLine appends one line (with its newline) to b.
func (t *textWriter) appendLine(b []byte) []byte {
	t.line++
	t.clock += t.rng.Int64N(2000)
	switch t.style {
	case styleCSV:
		if t.line == 1 {
			return append(b, "id,ts,user,category,label,score,amount,comment\n"...)
		}
		b = strconv.AppendInt(b, t.line, 10)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.clock/1000, 10)
		b = append(b, ',')
		b = append(b, t.label(200)...)
		b = append(b, ',')
		b = append(b, t.label(24)...)
		b = append(b, ',')
		b = append(b, t.label(6)...)
		b = append(b, ',')
		b = strconv.AppendFloat(b, t.rng.Float64(), 'f', 2, 64)
		b = append(b, ',')
		b = strconv.AppendInt(b, t.rng.Int64N(1000)*10, 10)
		b = append(b, ",\""...)
		b = t.words(b, 3+t.rng.IntN(10), ' ')
		return append(b, "\"\n"...)
	case styleJSONL:
		b = append(b, `{"ts":`...)
		b = strconv.AppendInt(b, t.clock, 10)
		b = append(b, `,"event":"`...)
		b = t.words(b, 2, '.')
		b = append(b, `","user":"`...)
		b = t.words(b, 1, ' ')
		b = strconv.AppendInt(b, int64(t.rng.IntN(500)), 10)
		b = append(b, `","score":`...)
		b = strconv.AppendFloat(b, t.rng.Float64(), 'f', 3, 64)
		b = append(b, `,"msg":"`...)
		b = t.words(b, 4+t.rng.IntN(12), ' ')
		return append(b, "\"}\n"...)
	default:
		b = appendTimestamp(b, t.clock)
		b = append(b, ' ')
		b = append(b, levels[t.rng.IntN(len(levels))]...)
		b = append(b, ' ')
		b = t.words(b, 1, ' ')
		b = append(b, "-worker-"...)
		b = strconv.AppendInt(b, int64(t.rng.IntN(16)), 10)
		b = append(b, ": "...)
		b = t.words(b, 4+t.rng.IntN(12), ' ')
		b = append(b, " request_id="...)
		b = strconv.AppendUint(b, t.rng.Uint64()>>40, 16)
		b = append(b, " latency_ms="...)
		b = strconv.AppendInt(b, int64(t.rng.IntN(900)), 10)
		return append(b, '\n')
	}
}

// fill writes text lines into b; a line cut at the end of b goes on at the
// start of the next call, so a file written buffer by buffer has whole lines.
func (t *textWriter) fill(b []byte) {
	n := copy(b, t.pending)
	t.pending = t.pending[n:]
	for n < len(b) {
		t.scratch = t.appendLine(t.scratch[:0])
		k := copy(b[n:], t.scratch)
		n += k
		t.pending = t.scratch[k:]
	}
}

// appendTimestamp writes ms since the epoch as 2024-05-01T12:34:56.789Z,
// without time.Format's cost per line.
func appendTimestamp(b []byte, ms int64) []byte {
	days, rem := ms/86400000, ms%86400000
	y, m, d := civil(days)
	b = appendPad(b, y, 4)
	b = append(b, '-')
	b = appendPad(b, m, 2)
	b = append(b, '-')
	b = appendPad(b, d, 2)
	b = append(b, 'T')
	b = appendPad(b, rem/3600000, 2)
	b = append(b, ':')
	b = appendPad(b, rem/60000%60, 2)
	b = append(b, ':')
	b = appendPad(b, rem/1000%60, 2)
	b = append(b, '.')
	b = appendPad(b, rem%1000, 3)
	return append(b, 'Z')
}

func appendPad(b []byte, v int64, width int) []byte {
	var tmp [20]byte
	s := strconv.AppendInt(tmp[:0], v, 10)
	for i := len(s); i < width; i++ {
		b = append(b, '0')
	}
	return append(b, s...)
}

// civil converts days since 1970-01-01 to a proleptic Gregorian date
// (Howard Hinnant's days_from_civil inverse).
func civil(days int64) (y, m, d int64) {
	z := days + 719468
	era := z / 146097
	doe := z - era*146097
	yoe := (doe - doe/1460 + doe/36524 - doe/146096) / 365
	y = yoe + era*400
	doy := doe - (365*yoe + yoe/4 - yoe/100)
	mp := (5*doy + 2) / 153
	d = doy - (153*mp+2)/5 + 1
	m = mp + 3
	if m > 12 {
		m -= 12
	}
	if m <= 2 {
		y++
	}
	return y, m, d
}
