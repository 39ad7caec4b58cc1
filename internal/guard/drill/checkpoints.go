package drill

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
)

// Checkpoint sizing: scale files' worth at checkpointBytesPerFile each,
// clamped, so the default scale writes about 62 MiB per epoch and a small
// test scale stays small.
const (
	checkpointBytesPerFile = 32 << 10
	checkpointMinBytes     = 1 << 20
	checkpointMaxBytes     = 200 << 20
	checkpointEpochs       = 3
)

// checkpoints saves a model every epoch the way torch and Hugging Face do
// (write a temp file, rename it over the last one): an fp32 and an fp16
// .safetensors of the same weights, the embeddings as .npy and the
// optimizer state as a raw .bin.
func checkpoints(ctx context.Context, dir string, scale int) error {
	total := min(max(scale*checkpointBytesPerFile, checkpointMinBytes), checkpointMaxBytes)
	// Per weight: fp32 (4 bytes) + fp16 (2); the .npy and .bin each hold
	// one of four tensors in fp32 (1 + 1): 8 bytes.
	weights := total / 8
	dst := filepath.Join(dir, "checkpoints")
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	r := mrand.New(mrand.NewPCG(uint64(scale), 5))
	// Four layers, the first an embedding: shapes [rows, 256].
	const cols = 256
	rows := max(weights/cols/4, 1)
	names := []string{"embed.weight", "layers.0.weight", "layers.1.weight", "head.weight"}
	tensors := make([][]float32, len(names))
	for i := range tensors {
		tensors[i] = make([]float32, rows*cols)
		for j := range tensors[i] {
			tensors[i][j] = float32(r.NormFloat64() * 0.02)
		}
	}
	for epoch := range checkpointEpochs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if epoch > 0 { // a training step: every weight moves a little
			for _, t := range tensors {
				for j := range t {
					t[j] += float32(r.NormFloat64() * 0.001)
				}
			}
		}
		saves := []struct {
			name  string
			write func(io.Writer) error
		}{
			{"model.safetensors", func(w io.Writer) error { return writeSafetensors(w, names, tensors, rows, cols, false) }},
			{"model-fp16.safetensors", func(w io.Writer) error { return writeSafetensors(w, names, tensors, rows, cols, true) }},
			{"embeddings.npy", func(w io.Writer) error { return writeNPY(w, tensors[0], rows, cols) }},
			{"optimizer.bin", func(w io.Writer) error { return writeFloat32s(w, tensors[1]) }},
		}
		for _, s := range saves {
			if err := saveAtomically(filepath.Join(dst, s.name), s.write); err != nil {
				return err
			}
		}
	}
	return nil
}

// saveAtomically writes p via p+".tmp" and a rename, as trainers do.
func saveAtomically(p string, write func(io.Writer) error) error {
	tmp := p + ".tmp"
	if err := writeFile(tmp, write); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, p)
}

// writeSafetensors writes tensors in the safetensors format: an 8-byte
// little-endian header length N, N bytes of JSON header (name to dtype,
// shape and [begin, end) byte offsets into the data, plus __metadata__),
// padded with spaces to a multiple of 8, then the tensors' bytes in order.
func writeSafetensors(w io.Writer, names []string, tensors [][]float32, rows, cols int, half bool) error {
	type entry struct {
		Dtype       string   `json:"dtype"`
		Shape       []int    `json:"shape"`
		DataOffsets [2]int64 `json:"data_offsets"`
	}
	header := map[string]any{"__metadata__": map[string]string{"format": "pt"}}
	dtype, size := "F32", int64(4)
	if half {
		dtype, size = "F16", 2
	}
	var off int64
	for i, name := range names {
		n := int64(len(tensors[i])) * size
		header[name] = entry{Dtype: dtype, Shape: []int{rows, cols}, DataOffsets: [2]int64{off, off + n}}
		off += n
	}
	js, err := json.Marshal(header)
	if err != nil {
		return err
	}
	if pad := len(js) % 8; pad != 0 {
		js = append(js, bytes.Repeat([]byte(" "), 8-pad)...)
	}
	if err := binary.Write(w, binary.LittleEndian, uint64(len(js))); err != nil {
		return err
	}
	if _, err := w.Write(js); err != nil {
		return err
	}
	for _, t := range tensors {
		if !half {
			if err := writeFloat32s(w, t); err != nil {
				return err
			}
			continue
		}
		buf := make([]byte, 0, 64<<10)
		for _, f := range t {
			buf = binary.LittleEndian.AppendUint16(buf, float16(f))
			if len(buf) == cap(buf) {
				if _, err := w.Write(buf); err != nil {
					return err
				}
				buf = buf[:0]
			}
		}
		if _, err := w.Write(buf); err != nil {
			return fmt.Errorf("safetensors: %w", err)
		}
	}
	return nil
}

// float16 converts f to IEEE 754 binary16 bits, rounding to nearest even;
// values too small become (signed) zero or subnormals, too large infinity.
func float16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int((b>>23)&0xff) - 127 + 15
	mant := b & 0x7fffff
	switch {
	case (b>>23)&0xff == 0xff: // Inf or NaN
		if mant != 0 {
			return sign | 0x7e00
		}
		return sign | 0x7c00
	case exp >= 0x1f:
		return sign | 0x7c00
	case exp <= 0:
		if exp < -10 {
			return sign
		}
		mant |= 0x800000 // the implicit leading 1
		shift := uint(14 - exp)
		half := mant >> shift
		rem := mant & (1<<shift - 1)
		if rem > 1<<(shift-1) || (rem == 1<<(shift-1) && half&1 == 1) {
			half++
		}
		return sign | uint16(half)
	}
	half := uint32(exp)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && half&1 == 1) {
		half++ // may carry into the exponent, which is still correct
	}
	return sign | uint16(half)
}
