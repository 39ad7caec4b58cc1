package detect

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"math"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
)

func tfrecordOf(payload []byte) []byte {
	mask := func(c uint32) uint32 { return (c>>15 | c<<17) + 0xa282ead8 }
	var b bytes.Buffer
	var l [8]byte
	binary.LittleEndian.PutUint64(l[:], uint64(len(payload)))
	b.Write(l[:])
	binary.Write(&b, binary.LittleEndian, mask(crc32.Checksum(l[:], crc32c)))
	b.Write(payload)
	binary.Write(&b, binary.LittleEndian, mask(crc32.Checksum(payload, crc32c)))
	return b.Bytes()
}

func TestSniffNamesFormatsByMagic(t *testing.T) {
	csv := csvText(1, 20<<10)
	w := normalFloats(1, 4096)
	img := noisyImage(1, 16, 16)
	tests := []struct {
		name string
		data []byte
		want format
	}{
		{"gzip", gzipOf(csv), fmtGzip},
		{"zip", zipOf(map[string][]byte{"a": csv}), fmtZip},
		{"xz", append([]byte("\xfd7zXZ\x00"), csv...), fmtXz},
		{"zstd", append([]byte{0x28, 0xb5, 0x2f, 0xfd}, csv...), fmtZstd},
		{"zstd skippable frame", append([]byte{0x50, 0x2a, 0x4d, 0x18}, csv...), fmtZstd},
		{"bzip2", append([]byte("BZh91AY&SY"), csv...), fmtBzip2},
		{"7z", append([]byte("7z\xbc\xaf\x27\x1c"), csv...), fmt7z},
		{"png", pngOf(img), fmtPNG},
		{"jpeg", jpegOf(img), fmtJPEG},
		{"gif", []byte("GIF89a\x10\x00\x10\x00"), fmtGIF},
		{"webp", []byte("RIFF\x00\x10\x00\x00WEBPVP8 "), fmtWebP},
		{"pdf", []byte("%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"), fmtPDF},
		{"parquet", []byte("PAR1\x15\x04\x15"), fmtParquet},
		{"npy", npyOf("<f4", len(w), fp32Bytes(w)), fmtNpy},
		{"safetensors", safetensorsOf("F16", len(w), fp16Bytes(w)), fmtSafetensors},
		{"tfrecord", tfrecordOf(csv[:300]), fmtTFRecord},
		{"hdf5", append([]byte("\x89HDF\r\n\x1a\n"), csv...), fmtHDF5},
		{"hdf5 after a 512-byte user block", append(make([]byte, 512), []byte("\x89HDF\r\n\x1a\n")...), fmtHDF5},
		{"deb", []byte("!<arch>\ndebian-binary   "), fmtAr},
		{"tar", tarOf(map[string][]byte{"a.csv": csv}), fmtTar},
		{"pickle protocol 2 (legacy torch.save)", []byte("\x80\x02\x8a\x0alZ\xfc\x9cF\xf9 j\xa8P\x19."), fmtPickle},
		{"pickle protocol 4", []byte("\x80\x04\x95\x10\x00\x00\x00\x00\x00\x00\x00}"), fmtPickle},
		{"gguf", []byte("GGUF\x03\x00\x00\x00"), fmtGGUF},
		{"mp4", []byte("\x00\x00\x00\x20ftypisom"), fmtISOBMFF},
		{"sqlite", []byte("SQLite format 3\x00\x10\x00"), fmtSQLite},
		{"zlib (a git loose object)", zlibOf(append([]byte("blob 4096\x00"), testkit.RandomBytes(2, 4096)...)), fmtZlib},
		{"zlib of text", zlibOf(csv), fmtZlib},
		{"git pack", append([]byte("PACK\x00\x00\x00\x02\x00\x00\x01\x00"), testkit.RandomBytes(3, 4000)...), fmtGitPack},
		{"git pack index", append([]byte("\xfftOc\x00\x00\x00\x02"), testkit.RandomBytes(4, 4000)...), fmtGitPack},
		{"a zlib header on random bytes is not zlib", append([]byte{0x78, 0x9c}, testkit.RandomBytes(5, 4094)...), fmtNone},
		{"text is no format", csv, fmtNone},
		{"random bytes are no format", testkit.RandomBytes(1, 4096), fmtNone},
		{"raw weights are no format", fp16Bytes(w), fmtNone},
		{"a gzip magic with reserved flags set is not gzip", []byte("\x1f\x8b\x08\xe0rest"), fmtNone},
		{"BZh without the block magic is not bzip2", []byte("BZh9 and then text"), fmtNone},
		{"a safetensors length past the end is not safetensors", append([]byte{0xff, 0, 0, 0, 0, 0, 0, 0}, `{"a":1}`...), fmtNone},
		{"a tfrecord length with a wrong checksum is not tfrecord", append([]byte{8, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4}, csv[:20]...), fmtNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			head := tc.data[:min(len(tc.data), BlockSize)]
			if got := sniff(head, int64(len(tc.data))); got != tc.want {
				t.Errorf("sniff = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSafetensorsHeaderLength(t *testing.T) {
	f := safetensorsOf("F32", 4, make([]byte, 16))
	n := safetensorsHeader(f, int64(len(f)))
	if want := binary.LittleEndian.Uint64(f); n != want || f[8+n] != 0 {
		t.Errorf("header length %d, want %d", n, want)
	}
	if n := safetensorsHeader(f[:9], 9); n != 0 {
		t.Errorf("9 bytes: %d", n)
	}
	empty := append([]byte{2, 0, 0, 0, 0, 0, 0, 0}, "{}"...)
	if n := safetensorsHeader(empty, 10); n != 2 {
		t.Errorf("{}: %d", n)
	}
}

func TestIsTextAcceptsEncodingsAndRefusesBinary(t *testing.T) {
	tests := []struct {
		name string
		data []byte
		want bool
	}{
		{"ASCII CSV", csvText(1, 4096), true},
		{"UTF-8 Cyrillic and CJK", unicodeText(1, 4096), true},
		{"UTF-8 cut at both ends of a block", unicodeText(1, 4096)[1:4001], true},
		{"UTF-16 with a BOM", utf16Text(1, 4096), true},
		{"a log with ANSI colours", []byte(strings.Repeat("\x1b[32mINFO\x1b[0m started worker\n", 100)), true},
		{"random bytes", testkit.RandomBytes(1, 4096), false},
		{"fp16 weights", fp16Bytes(normalFloats(1, 2048)), false},
		{"NUL-padded text", append(csvText(1, 2000), make([]byte, 2000)...), false},
		{"empty", nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isText(tc.data); got != tc.want {
				t.Errorf("isText = %v (bad %d of %d), want %v", got, textBad(tc.data), len(tc.data), tc.want)
			}
		})
	}
}

func TestTypeOfComesFromTheExtension(t *testing.T) {
	tests := []struct {
		path string
		want typeKind
	}{
		{"/d/train.CSV", kindText},
		{"/d/notebook.ipynb", kindText},
		{"/d/x.tar.gz", kindMagic},
		{"/d/model.safetensors", kindMagic},
		{"/d/model.onnx", kindBinary},
		{"/d/pytorch_model.bin", kindBinary},
		{"/d/.train.csv.tmp3f9a2", kindText},
		{"/d/model.safetensors.part", kindMagic},
		{"/d/x.tmp", kindUnknown},
		{"/d/Makefile", kindUnknown},
		{"/d/.bashrc", kindUnknown},
		{"/d/run.2024-01-01T10:00:00.000000000Z-and-more", kindUnknown},
	}
	for _, tc := range tests {
		if got := typeOf(tc.path).kind; got != tc.want {
			t.Errorf("typeOf(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}

// FuzzClassify feeds arbitrary bytes, as a file's content, through
// everything that parses file bytes: magic detection, the safetensors and
// TFRecord headers, the text and χ² judgements and both content detectors.
// None may panic, and their answers must agree with each other.
func FuzzClassify(f *testing.F) {
	csv := csvText(1, 9000)
	w := normalFloats(1, 2048)
	for _, seed := range [][]byte{
		nil, {0x1f, 0x8b, 0x08, 0x00}, []byte("PAR1"), []byte("\x93NUMPY\x01\x00"), safetensorsOf("F16", len(w), fp16Bytes(w)),
		tfrecordOf([]byte("x")), []byte("\x80\x04\x95"), []byte("BZh91AY&SY"), csv, encrypt(csv), encryptStripes(csv, 16, true),
		utf16Text(1, 600), []byte{0xff, 0xfe, 0x00, 0xd8}, []byte("\xe4\xb8"), testkit.RandomBytes(1, 700),
	} {
		f.Add(seed, "x.csv")
		f.Add(seed, "x.safetensors")
		f.Add(seed, "x")
	}
	f.Fuzz(func(t *testing.T, data []byte, name string) {
		if strings.ContainsRune(name, 0) {
			return
		}
		size := int64(len(data))
		head := data[:min(len(data), BlockSize)]
		got := sniff(head, size)
		if got >= fmtCount {
			t.Fatalf("sniff = %d", got)
		}
		if n := safetensorsHeader(head, size); n > 0 && (n > uint64(size) || head[8] != '{') {
			t.Fatalf("safetensors header %d in %d bytes", n, size)
		}
		if bad := textBad(data); bad < 0 || bad > len(data) {
			t.Fatalf("textBad %d of %d", bad, len(data))
		}
		if len(data) > 0 {
			if x := chiSquare(data); x < 0 || math.IsNaN(x) {
				t.Fatalf("χ² %v", x)
			}
		}
		var c Content
		c.Size = size
		for off := 0; off < len(data); off += BlockSize {
			c.Offsets = append(c.Offsets, int64(off))
			c.Blocks = append(c.Blocks, data[off:min(off+BlockSize, len(data))])
		}
		path := "/d/" + strings.ReplaceAll(name, "/", "_")
		s, reason := assessRandomness(path, &c, true)
		if (s == 0) != (reason == "") || s > Strong {
			t.Fatalf("randomness %d %q", s, reason)
		}
		if got != fmtNone && s > 0 && got != fmtParquet {
			t.Fatalf("fired on a file opening with %v magic: %s", got, reason)
		}
		ok, reason := assessIntermittent(path, &c)
		if ok == (reason == "") {
			t.Fatalf("intermittent %v %q", ok, reason)
		}
		stripedWidth(data[:min(len(data), BlockSize)])
	})
}

// Random bytes behind a valid zlib header (one in about 2,000 random heads
// has one) must not pass for zlib: inflating them fails.
func TestSniffTellsRandomBytesBehindAZlibHeaderFromZlib(t *testing.T) {
	passed := 0
	for seed := range uint64(20000) {
		head := testkit.RandomBytes(seed, BlockSize)
		head[0], head[1] = 0x78, 0x9c
		if sniff(head, int64(len(head))) == fmtZlib {
			passed++
		}
	}
	if passed > 2 {
		t.Errorf("%d of 20000 random blocks with a zlib header pass for zlib", passed)
	}
}
