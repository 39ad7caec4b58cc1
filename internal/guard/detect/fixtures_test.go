package detect

import (
	"archive/tar"
	"archive/zip"
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/aes"
	"crypto/cipher"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/watch"
)

// Test data, generated from fixed seeds so every run sees the same bytes.

func rng(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x5eed)) }

var testWords = strings.Fields(`alpha beta gamma delta sensor value reading station north south
	east west sample label train test validation batch model weight loss score region city`)

// csvText is a CSV of about size bytes: ids, timestamps, floats, words.
func csvText(seed uint64, size int) []byte {
	r := rng(seed)
	var b bytes.Buffer
	b.WriteString("id,time,station,temp,humidity,label,comment\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "%d,2024-05-%02dT%02d:%02d:00Z,%s-%d,%.3f,%.2f,%s,%s %s %s\n", i, 1+r.IntN(28), r.IntN(24), r.IntN(60),
			testWords[r.IntN(len(testWords))], r.IntN(90), r.NormFloat64()*8+15, r.Float64()*100,
			testWords[r.IntN(len(testWords))], testWords[r.IntN(len(testWords))], testWords[r.IntN(len(testWords))], testWords[r.IntN(len(testWords))])
	}
	return b.Bytes()[:size]
}

// jsonText is pretty-printed JSON of about size bytes.
func jsonText(seed uint64, size int) []byte {
	r := rng(seed)
	var recs []map[string]any
	for n := 0; n < size; n += 120 {
		recs = append(recs, map[string]any{"id": r.IntN(1e6), "name": testWords[r.IntN(len(testWords))], "score": r.Float64(), "tags": []string{testWords[r.IntN(len(testWords))], "x"}})
	}
	b, _ := json.MarshalIndent(recs, "", "  ")
	return b
}

// pythonText is Python source of about size bytes.
func pythonText(seed uint64, size int) []byte {
	r := rng(seed)
	var b bytes.Buffer
	b.WriteString("import numpy as np\n\n")
	for i := 0; b.Len() < size; i++ {
		fmt.Fprintf(&b, "def step_%d(x, lr=%.4f):\n    \"\"\"Update the %s weights.\"\"\"\n    return x - lr * np.gradient(x) * %d\n\n", i, r.Float64()/100, testWords[r.IntN(len(testWords))], r.IntN(100))
	}
	return b.Bytes()
}

// unicodeText is UTF-8 text mostly outside ASCII (Cyrillic and CJK).
func unicodeText(seed uint64, size int) []byte {
	r := rng(seed)
	words := []string{"данные", "модель", "обучение", "数据", "模型", "训练", "样本", "значение"}
	var b bytes.Buffer
	for b.Len() < size {
		b.WriteString(words[r.IntN(len(words))])
		b.WriteString(" ")
		if r.IntN(8) == 0 {
			b.WriteString("\n")
		}
	}
	return b.Bytes()
}

// latin1Text is text in ISO-8859-1: accented letters are single bytes
// that are not valid UTF-8.
func latin1Text(seed uint64, size int) []byte {
	t := csvText(seed, size)
	r := rng(seed + 1)
	for i := range t {
		if t[i] == 'e' && r.IntN(4) == 0 {
			t[i] = 0xe9 // é
		}
	}
	return t
}

// utf16Text is little-endian UTF-16 with a byte order mark.
func utf16Text(seed uint64, size int) []byte {
	t := csvText(seed, size/2)
	b := []byte{0xff, 0xfe}
	for _, c := range t {
		b = append(b, c, 0)
	}
	return b
}

// keystream is size bytes of AES-CTR keystream under a fixed key.
func keystream(seed uint64, size int) []byte {
	key := make([]byte, 32)
	iv := make([]byte, aes.BlockSize)
	r := rng(seed)
	for i := range key {
		key[i] = byte(r.Uint32())
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err)
	}
	ks := make([]byte, size)
	cipher.NewCTR(block, iv).XORKeyStream(ks, ks)
	return ks
}

// encrypt is data under AES-CTR: what ransomware writes.
func encrypt(data []byte) []byte {
	ks := keystream(99, len(data))
	out := make([]byte, len(data))
	for i := range data {
		out[i] = data[i] ^ ks[i]
	}
	return out
}

// encryptStripes encrypts every other stripe of width bytes, starting
// with the first when first is true.
func encryptStripes(data []byte, width int, first bool) []byte {
	ks := keystream(7, len(data))
	out := bytes.Clone(data)
	for i := range out {
		if ((i/width)%2 == 0) == first {
			out[i] ^= ks[i]
		}
	}
	return out
}

// encryptHead encrypts the first n bytes only (LockBit's fast mode).
func encryptHead(data []byte, n int) []byte {
	out := bytes.Clone(data)
	copy(out, encrypt(data[:n]))
	return out
}

// gzipOf and zlibOf compress data as gzip and as a zlib stream (git's
// loose objects).
func gzipOf(data []byte) []byte {
	return compressed(data, func(w io.Writer) io.WriteCloser { return gzip.NewWriter(w) })
}
func zlibOf(data []byte) []byte {
	return compressed(data, func(w io.Writer) io.WriteCloser { return zlib.NewWriter(w) })
}

func compressed(data []byte, newWriter func(io.Writer) io.WriteCloser) []byte {
	var b bytes.Buffer
	w := newWriter(&b)
	w.Write(data)
	w.Close()
	return b.Bytes()
}

func zipOf(files map[string][]byte) []byte {
	var b bytes.Buffer
	w := zip.NewWriter(&b)
	for _, name := range sortedKeys(files) {
		f, _ := w.Create(name)
		f.Write(files[name])
	}
	w.Close()
	return b.Bytes()
}

func tarOf(files map[string][]byte) []byte {
	var b bytes.Buffer
	w := tar.NewWriter(&b)
	for _, name := range sortedKeys(files) {
		w.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(files[name])), ModTime: time.Unix(1.7e9, 0)})
		w.Write(files[name])
	}
	w.Close()
	return b.Bytes()
}

func sortedKeys(m map[string][]byte) []string { return slices.Sorted(maps.Keys(m)) }

// normalFloats are n weights drawn from N(0, 0.02²), as a freshly
// initialised or trained layer holds.
func normalFloats(seed uint64, n int) []float32 {
	r := rng(seed)
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * 0.02)
	}
	return v
}

func fp32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(f))
	}
	return b
}

// fp16Bytes converts to IEEE 754 half precision (round toward zero).
func fp16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, f := range v {
		bits := math.Float32bits(f)
		sign := uint16(bits>>16) & 0x8000
		exp := int((bits>>23)&0xff) - 127 + 15
		mant := bits & 0x7fffff
		var h uint16
		switch {
		case exp >= 31:
			h = sign | 0x7c00
		case exp <= 0:
			if exp > -10 {
				h = sign | uint16((mant|0x800000)>>(14-exp))
			} else {
				h = sign
			}
		default:
			h = sign | uint16(exp)<<10 | uint16(mant>>13)
		}
		binary.LittleEndian.PutUint16(b[2*i:], h)
	}
	return b
}

// bf16Bytes keeps the upper half of each float32.
func bf16Bytes(v []float32) []byte {
	b := make([]byte, 2*len(v))
	for i, f := range v {
		binary.LittleEndian.PutUint16(b[2*i:], uint16(math.Float32bits(f)>>16))
	}
	return b
}

// npyOf is a NumPy .npy (version 1.0) of a 1-d array with dtype descr.
func npyOf(descr string, n int, data []byte) []byte {
	h := fmt.Sprintf("{'descr': '%s', 'fortran_order': False, 'shape': (%d,), }", descr, n)
	pad := 64 - (10+len(h)+1)%64
	h += strings.Repeat(" ", pad) + "\n"
	var b bytes.Buffer
	b.WriteString("\x93NUMPY\x01\x00")
	binary.Write(&b, binary.LittleEndian, uint16(len(h)))
	b.WriteString(h)
	b.Write(data)
	return b.Bytes()
}

// safetensorsOf is a .safetensors file with one tensor.
func safetensorsOf(dtype string, n int, data []byte) []byte {
	h := fmt.Sprintf(`{"__metadata__":{"format":"pt"},"weight":{"dtype":"%s","shape":[%d],"data_offsets":[0,%d]}}`, dtype, n, len(data))
	for len(h)%8 != 0 {
		h += " "
	}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, uint64(len(h)))
	b.WriteString(h)
	b.Write(data)
	return b.Bytes()
}

// noisyImage is an image of uniform noise: the worst case for PNG, whose
// compressed stream then looks as random as ciphertext.
func noisyImage(seed uint64, w, h int) image.Image {
	r := rng(seed)
	img := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := range h {
		for x := range w {
			img.Set(x, y, color.NRGBA{uint8(r.Uint32()), uint8(r.Uint32()), uint8(r.Uint32()), 255})
		}
	}
	return img
}

func pngOf(img image.Image) []byte {
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

func jpegOf(img image.Image) []byte {
	var b bytes.Buffer
	jpeg.Encode(&b, img, &jpeg.Options{Quality: 90})
	return b.Bytes()
}

func join(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// contentOf writes data to a file called name and samples it as the guard
// does.
func contentOf(t testing.TB, name string, data []byte) *Content {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	c, err := Sample(f, int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Events.

var t0 = time.Date(2025, 3, 1, 9, 0, 0, 0, time.UTC)

func uid(u uint32) *uint32 { return &u }

func at(sec float64) time.Time { return t0.Add(time.Duration(sec * float64(time.Second))) }

func ev(k watch.Kind, path string, who *uint32, sec float64) Input {
	return Input{Dataset: "ds", Event: watch.Event{Time: at(sec), Kind: k, Path: path, Root: "/d", Principal: watch.Principal{UID: who}}}
}

func rename(oldPath, path string, who *uint32, sec float64) Input {
	in := ev(watch.Rename, path, who, sec)
	in.Event.OldPath = oldPath
	return in
}

func withContent(in Input, c *Content) Input {
	in.Content = c
	return in
}

// observeAll runs d over ins and returns every signal.
func observeAll(d Detector, ins []Input) []Signal {
	var out []Signal
	for _, in := range ins {
		out = append(out, d.Observe(in)...)
	}
	return out
}

// strengths lists the signals' strengths, in order.
func strengths(sigs []Signal) []Strength {
	var s []Strength
	for _, sg := range sigs {
		s = append(s, sg.Strength)
	}
	return s
}
