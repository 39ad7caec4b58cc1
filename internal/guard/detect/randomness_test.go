package detect

import (
	"bytes"
	"math"
	"testing"

	"github.com/custodyhq/custody/internal/testkit"
	"github.com/custodyhq/custody/internal/watch"
)

// contentCase is a file as written, and what the content detectors must
// say of it.
type contentCase struct {
	name         string
	file         string // its name: the extension matters
	data         []byte
	randomness   Strength // 0: no signal
	intermittent bool
}

func contentCases() []contentCase {
	csv := csvText(1, 120<<10)
	weights := normalFloats(2, 64<<10)
	fp32, fp16, bf16 := fp32Bytes(weights), fp16Bytes(weights), bf16Bytes(weights)
	noise := noisyImage(3, 96, 96)
	ciphertext := encrypt(csv)
	return []contentCase{
		// Text.
		{name: "plain CSV rewrite fires nothing", file: "train.csv", data: csv},
		{name: "plain JSON rewrite fires nothing", file: "meta.json", data: jsonText(4, 40<<10)},
		{name: "plain Python rewrite fires nothing", file: "train.py", data: pythonText(5, 30<<10)},
		{name: "Cyrillic and CJK UTF-8 text fires nothing", file: "corpus.txt", data: unicodeText(6, 50<<10)},
		{name: "Latin-1 text fires nothing", file: "legacy.csv", data: latin1Text(7, 50<<10)},
		{name: "UTF-16 text with a BOM fires nothing", file: "export.txt", data: utf16Text(8, 50<<10)},
		{name: "AES-CTR encrypted CSV is Strong", file: "train.csv", data: ciphertext, randomness: Strong},
		{name: "encrypted CSV with a key blob trailer is Strong", file: "train.csv", data: join(ciphertext, testkit.RandomBytes(9, 16), []byte("DRILL1")), randomness: Strong},
		{name: "encrypted CSV in a temporary file is Strong", file: "train.csv.tmp3f9a2", data: ciphertext, randomness: Strong},
		{name: "encrypted JSON is Strong", file: "meta.json", data: encrypt(jsonText(4, 40<<10)), randomness: Strong},
		{name: "encrypted CSV of 3 KiB is Strong", file: "small.csv", data: encrypt(csv[:3000]), randomness: Strong},
		{name: "encrypted CSV of 300 bytes is judged whole and Strong", file: "tiny.csv", data: encrypt(csv[:300]), randomness: Strong},
		{name: "a 100-byte file is never judged", file: "tiny.csv", data: encrypt(csv[:100])},
		{name: "text then an appended archive (self-extracting installer) fires nothing", file: "install.sh",
			data: join(pythonText(10, 12<<10), testkit.RandomBytes(11, 60<<10))},

		// Partial encryption.
		{name: "CSV with every other 16 bytes encrypted is intermittent", file: "train.csv", data: encryptStripes(csv, 16, true), intermittent: true},
		{name: "CSV with the odd 16-byte stripes encrypted is intermittent", file: "train.csv", data: encryptStripes(csv, 16, false), intermittent: true},
		{name: "CSV with every other 64 bytes encrypted is intermittent", file: "train.csv", data: encryptStripes(csv, 64, true), intermittent: true},
		{name: "CSV with every other 4 KiB block encrypted, the first one too, is Strong and intermittent", file: "train.csv",
			data: encryptStripes(csv, 4096, true), randomness: Strong, intermittent: true},
		{name: "CSV with every other 4 KiB block encrypted, the first one not, is intermittent", file: "train.csv",
			data: encryptStripes(csv, 4096, false), intermittent: true},
		{name: "CSV with its first 4 KiB encrypted is Strong and intermittent", file: "train.csv", data: encryptHead(csv, 4096), randomness: Strong, intermittent: true},
		{name: "extensionless text with every other 16 bytes encrypted is intermittent", file: "NOTES", data: encryptStripes(csv, 16, true), intermittent: true},

		// Compressed and packed formats with their magic.
		{name: "gzip of CSV fires nothing", file: "train.csv.gz", data: gzipOf(csv)},
		{name: "zip of CSVs fires nothing", file: "bundle.zip", data: zipOf(map[string][]byte{"a.csv": csv, "b.bin": testkit.RandomBytes(12, 30<<10)})},
		{name: "zstd frame of random bytes with its magic fires nothing", file: "shard.zst", data: join([]byte{0x28, 0xb5, 0x2f, 0xfd}, testkit.RandomBytes(13, 80<<10))},
		{name: "tar of random files fires nothing", file: "blobs.tar", data: tarOf(map[string][]byte{"a": testkit.RandomBytes(14, 40<<10), "b": testkit.RandomBytes(15, 40<<10)})},
		{name: "PNG of noise fires nothing", file: "noise.png", data: pngOf(noise)},
		{name: "JPEG of noise fires nothing", file: "noise.jpg", data: jpegOf(noise)},
		{name: "a JPEG named .png is mislabelled, not encrypted", file: "photo.png", data: jpegOf(noise)},
		{name: "an HTML error page saved as .jpg fires nothing", file: "photo.jpg", data: []byte("<html><body><h1>404 Not Found</h1>" + string(bytes.Repeat([]byte("<p>nothing here</p>\n"), 40)) + "</body></html>")},
		{name: "a Parquet file with head and footer magic fires nothing", file: "part-0.parquet", data: join([]byte("PAR1"), testkit.RandomBytes(16, 40<<10), []byte("PAR1"))},

		// Model weights, written by a trainer.
		{name: "fp32 weights in .npy fire nothing", file: "w.npy", data: npyOf("<f4", len(weights), fp32)},
		{name: "fp16 weights in .npy fire nothing", file: "w16.npy", data: npyOf("<f2", len(weights), fp16)},
		{name: "fp32 weights in .safetensors fire nothing", file: "model.safetensors", data: safetensorsOf("F32", len(weights), fp32)},
		{name: "fp16 weights in .safetensors fire nothing", file: "model.safetensors", data: safetensorsOf("F16", len(weights), fp16)},
		{name: "bf16 weights in .safetensors fire nothing", file: "model.safetensors", data: safetensorsOf("BF16", len(weights), bf16)},
		{name: "raw fp32 weights in .bin fire nothing", file: "pytorch_model.bin", data: fp32},
		{name: "raw fp16 weights in .bin fire nothing", file: "pytorch_model.bin", data: fp16},
		{name: "raw fp16 weights in .ckpt fire nothing", file: "last.ckpt", data: fp16},
		{name: "raw fp16 weights in .pt without magic fire nothing", file: "w.pt", data: fp16},

		// Random data of unknown type.
		{name: "random bytes in .bin are Weak only", file: "noise.bin", data: testkit.RandomBytes(17, 100<<10), randomness: Weak},
		{name: "random bytes without extension are Weak only", file: "blob", data: testkit.RandomBytes(18, 100<<10), randomness: Weak},
		{name: "random bytes of 300 bytes and unknown type are not judged", file: "key.bin", data: testkit.RandomBytes(19, 300)},
		{name: "a byte counter is too even to be random", file: "pattern.bin", data: bytes.Repeat(seq256(), 200)},

		// Formats whose magic the ciphertext lost.
		{name: "encrypted .npy is Strong", file: "w.npy", data: encrypt(npyOf("<f4", len(weights), fp32)), randomness: Strong},
		{name: "encrypted .safetensors is Strong", file: "model.safetensors", data: encrypt(safetensorsOf("F16", len(weights), fp16)), randomness: Strong},
		{name: "encrypted PNG is Strong", file: "noise.png", data: encrypt(pngOf(noise)), randomness: Strong},
		{name: "encrypted gzip is Strong", file: "train.csv.gz", data: encrypt(gzipOf(csv)), randomness: Strong},
		{name: "encrypted .pt is Strong", file: "model.pt", data: encrypt(zipOf(map[string][]byte{"data/0": fp16})), randomness: Strong},
		{name: "zstd without its magic is Strong", file: "shard.zst", data: testkit.RandomBytes(20, 80<<10), randomness: Strong},
		{name: "encrypted raw weights in .bin are Weak only", file: "pytorch_model.bin", data: encrypt(fp16), randomness: Weak},
	}
}

func seq256() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestRandomnessJudgesContentByType(t *testing.T) {
	r := NewRandomness()
	for _, tc := range contentCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := contentOf(t, tc.file, tc.data)
			in := withContent(ev(watch.CloseWrite, "/d/"+tc.file, uid(1000), 0), c)
			sigs := r.Observe(in)
			var got Strength
			if len(sigs) > 0 {
				got = sigs[0].Strength
			}
			if len(sigs) > 1 || got != tc.randomness {
				t.Fatalf("signals %v, want strength %d; %+v", strengths(sigs), tc.randomness, sigs)
			}
			if got > 0 && (sigs[0].Detector != "randomness" || sigs[0].Path != "/d/"+tc.file || sigs[0].Reason == "") {
				t.Errorf("signal %+v", sigs[0])
			}
		})
	}
}

func TestIntermittentFiresOnPartlyEncryptedText(t *testing.T) {
	d := NewIntermittent()
	for _, tc := range contentCases() {
		t.Run(tc.name, func(t *testing.T) {
			c := contentOf(t, tc.file, tc.data)
			sigs := d.Observe(withContent(ev(watch.CloseWrite, "/d/"+tc.file, uid(1000), 0), c))
			if got := len(sigs) > 0; got != tc.intermittent {
				t.Fatalf("fired %v, want %v: %+v", got, tc.intermittent, sigs)
			}
			if len(sigs) > 0 && (sigs[0].Strength != Strong || sigs[0].Reason == "") {
				t.Errorf("signal %+v", sigs[0])
			}
		})
	}
}

func TestRandomnessIgnoresEventsWithoutContent(t *testing.T) {
	for _, in := range []Input{
		ev(watch.CloseWrite, "/d/a.csv", uid(1), 0),
		ev(watch.Delete, "/d/a.csv", uid(1), 0),
		withContent(ev(watch.CloseWrite, "/d/a.csv", uid(1), 0), &Content{}),
	} {
		if s := NewRandomness().Observe(in); s != nil {
			t.Errorf("%v: %+v", in.Event.Kind, s)
		}
		if s := NewIntermittent().Observe(in); s != nil {
			t.Errorf("%v: %+v", in.Event.Kind, s)
		}
	}
}

func TestRandomnessParquetFooterCheckedOnceClosed(t *testing.T) {
	data := join([]byte("PAR1"), testkit.RandomBytes(21, 40<<10)) // footer gone
	c := contentOf(t, "p.parquet", data)
	r := NewRandomness()
	if s := r.Observe(withContent(ev(watch.Modify, "/d/p.parquet", uid(1), 0), c)); s != nil {
		t.Errorf("still being written: %+v", s)
	}
	s := r.Observe(withContent(ev(watch.CloseWrite, "/d/p.parquet", uid(1), 0), c))
	if len(s) != 1 || s[0].Strength != Strong {
		t.Errorf("closed: %+v", s)
	}
	created := withContent(ev(watch.Create, "/d/p.parquet", uid(1), 0), c)
	created.Event.Detail = map[string]string{"close-write": "1"}
	if s := r.Observe(created); len(s) != 1 {
		t.Errorf("create with a folded close-write: %+v", s)
	}
}

func TestUniformBandForFourKiBIsAbout157To347(t *testing.T) {
	lo, hi := uniformBand(BlockSize, false)
	if math.Abs(lo-157) > 2 || math.Abs(hi-347) > 2 {
		t.Errorf("band [%.1f, %.1f], want about [157, 347]", lo, hi)
	}
	loS, hiS := uniformBand(300, true)
	if hiS <= hi || loS >= 255 {
		t.Errorf("small-file band [%.1f, %.1f] is not looser than [%.1f, %.1f]", loS, hiS, lo, hi)
	}
}

// TestUniformBandHoldsRandomBlocks checks the band's false-negative rate
// on ciphertext: with a 1e-4 tail, 2000 blocks should lose at most a few.
func TestUniformBandHoldsRandomBlocks(t *testing.T) {
	for _, n := range []int{512, 1024, 2048, 4096} {
		miss := 0
		for i := range 2000 {
			if ok, _ := looksRandom(testkit.RandomBytes(uint64(1000*n+i), n), false); !ok {
				miss++
			}
		}
		if miss > 3 {
			t.Errorf("%d-byte blocks: %d of 2000 random blocks outside the band", n, miss)
		}
	}
}

func TestChiSquareOfTextAndWeightsIsFarAboveTheBand(t *testing.T) {
	_, hi := uniformBand(BlockSize, false)
	for name, b := range map[string][]byte{
		"csv":  csvText(1, BlockSize),
		"fp32": fp32Bytes(normalFloats(1, BlockSize/4)),
		"fp16": fp16Bytes(normalFloats(1, BlockSize/2)),
		"bf16": bf16Bytes(normalFloats(1, BlockSize/2)),
	} {
		if x := chiSquare(b); x < 3*hi {
			t.Errorf("%s: χ² %.0f, want far above %.0f", name, x, hi)
		}
	}
}
