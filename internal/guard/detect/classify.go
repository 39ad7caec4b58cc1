package detect

import (
	"bytes"
	"compress/zlib"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"strings"
	"unicode/utf8"
)

// What a file's extension says its bytes should look like.
type typeKind uint8

const (
	kindUnknown typeKind = iota // no extension, or one not in typeByExt
	kindText                    // text: CSV, JSON, source code, logs
	kindMagic                   // a format that starts with magic bytes
	kindBinary                  // a binary format without magic (ONNX, raw tensors)
)

// fileType is what an extension promises: a kind and, for kindMagic and
// some kindBinary types, the formats whose magic may open the file.
type fileType struct {
	kind    typeKind
	formats []format
}

// format is a file format recognised by its first bytes.
type format uint8

const (
	fmtNone format = iota
	fmtGzip
	fmtZip
	fmtXz
	fmtZstd
	fmtBzip2
	fmt7z
	fmtLZ4
	fmtPNG
	fmtJPEG
	fmtGIF
	fmtWebP
	fmtTIFF
	fmtBMP
	fmtPDF
	fmtParquet
	fmtNpy
	fmtSafetensors
	fmtTFRecord
	fmtHDF5
	fmtNetCDF
	fmtAr
	fmtTar
	fmtPickle
	fmtArrow
	fmtAvro
	fmtORC
	fmtWAV
	fmtAVI
	fmtFLAC
	fmtOgg
	fmtMP3
	fmtISOBMFF // mp4, mov, m4a, heic
	fmtEBML    // mkv, webm
	fmtGGUF
	fmtTFLite
	fmtSQLite
	fmtZlib    // RFC 1950: git's loose objects, PDF and PNG streams, many caches
	fmtGitPack // git's packfiles and their indexes
	fmtCount
)

var formatNames = [fmtCount]string{
	"none", "gzip", "zip", "xz", "zstd", "bzip2", "7z", "lz4", "PNG", "JPEG", "GIF", "WebP", "TIFF",
	"BMP", "PDF", "Parquet", "NumPy .npy", "safetensors", "TFRecord", "HDF5", "netCDF", "ar", "tar",
	"pickle", "Arrow", "Avro", "ORC", "WAV", "AVI", "FLAC", "Ogg", "MP3", "MP4/QuickTime",
	"Matroska/WebM", "GGUF", "TFLite", "SQLite", "zlib", "git pack",
}

func (f format) String() string {
	if f < fmtCount {
		return formatNames[f]
	}
	return "unknown"
}

func textType() fileType { return fileType{kind: kindText} }

func magicType(f ...format) fileType { return fileType{kind: kindMagic, formats: f} }

// typeByExt maps lower-case extensions to what the file should hold.
var typeByExt = func() map[string]fileType {
	m := map[string]fileType{}
	for _, e := range []string{
		"csv", "tsv", "psv", "txt", "text", "json", "jsonl", "ndjson", "geojson", "md", "markdown", "rst",
		"py", "pyi", "ipynb", "yaml", "yml", "xml", "html", "htm", "xhtml", "log", "sql", "js", "mjs",
		"ts", "tsx", "jsx", "go", "rs", "c", "h", "cc", "cpp", "hpp", "cs", "java", "kt", "scala", "rb",
		"pl", "php", "sh", "bash", "zsh", "r", "jl", "lua", "toml", "ini", "cfg", "conf", "properties",
		"env", "tex", "bib", "srt", "vtt", "svg", "css", "scss", "proto", "pbtxt", "prototxt", "dvc",
		"patch", "diff", "rtf", "arff", "libsvm", "conll", "lock",
	} {
		m[e] = textType()
	}
	magic := map[format][]string{
		fmtGzip: {"gz", "tgz", "gzip"}, fmtXz: {"xz", "txz"}, fmtZstd: {"zst", "zstd", "tzst"},
		fmtBzip2: {"bz2", "tbz2"}, fmt7z: {"7z"}, fmtLZ4: {"lz4"},
		fmtZip: {"zip", "docx", "xlsx", "pptx", "odt", "ods", "odp", "whl", "jar", "apk", "npz", "keras", "epub"},
		fmtPNG: {"png"}, fmtJPEG: {"jpg", "jpeg", "jpe", "jfif"}, fmtGIF: {"gif"}, fmtWebP: {"webp"},
		fmtTIFF: {"tif", "tiff"}, fmtBMP: {"bmp"}, fmtPDF: {"pdf"}, fmtParquet: {"parquet"},
		fmtNpy: {"npy"}, fmtSafetensors: {"safetensors"}, fmtTFRecord: {"tfrecord", "tfrecords"},
		fmtHDF5: {"h5", "hdf5", "hdf", "he5"}, fmtAr: {"deb", "a"}, fmtTar: {"tar"},
		fmtPickle: {"pkl", "pickle"}, fmtArrow: {"arrow", "feather"}, fmtAvro: {"avro"}, fmtORC: {"orc"},
		fmtWAV: {"wav"}, fmtAVI: {"avi"}, fmtFLAC: {"flac"}, fmtOgg: {"ogg", "oga", "opus"}, fmtMP3: {"mp3"},
		fmtISOBMFF: {"mp4", "m4a", "m4v", "mov", "heic", "heif", "3gp"}, fmtEBML: {"mkv", "webm"},
		fmtGGUF: {"gguf"}, fmtTFLite: {"tflite"}, fmtSQLite: {"sqlite", "sqlite3"},
	}
	for f, exts := range magic {
		for _, e := range exts {
			m[e] = magicType(f)
		}
	}
	m["pt"] = magicType(fmtZip, fmtPickle) // torch.save: zip since 1.6, pickle before
	m["pth"] = magicType(fmtZip, fmtPickle)
	m["nc"] = magicType(fmtNetCDF, fmtHDF5)
	for _, e := range []string{"bin", "onnx", "pb", "ckpt", "msgpack", "joblib", "dat", "raw", "mdb", "idx", "index", "model", "weights"} {
		m[e] = fileType{kind: kindBinary}
	}
	return m
}()

// typeOf is what path's extension promises. A temporary, partial or
// backup suffix promises what the name before it does: "train.csv.tmp",
// ".train.csv.tmp3f9a2" and "model.safetensors.part" are a CSV and a
// safetensors file being written, or a copy of one.
func typeOf(path string) fileType {
	ext := extOf(path)
	if copySuffix(ext) {
		ext = extOf(stemOf(path))
	}
	return typeByExt[ext]
}

// copySuffix reports whether ext marks a temporary, partial or backup
// copy of a file of the type before it.
func copySuffix(ext string) bool {
	switch ext {
	case "part", "partial", "crdownload", "download", "downloading", "incomplete",
		"bak", "backup", "old", "orig", "prev", "save", "new":
		return true
	}
	return strings.HasPrefix(ext, "tmp") || strings.HasPrefix(ext, "temp")
}

func (t fileType) accepts(f format) bool {
	for _, g := range t.formats {
		if g == f {
			return true
		}
	}
	return false
}

// sniff names the format whose magic opens head (a file's first block;
// size is the whole file's), or fmtNone. Short magics are checked with the
// fields after them, so that random bytes rarely pass.
func sniff(head []byte, size int64) format {
	at := func(off int, magic string) bool {
		return len(head) >= off+len(magic) && string(head[off:off+len(magic)]) == magic
	}
	switch {
	case at(0, "\x1f\x8b\x08") && len(head) >= 4 && head[3]&0xe0 == 0:
		return fmtGzip
	case at(0, "PK\x03\x04"), at(0, "PK\x05\x06"), at(0, "PK\x07\x08"):
		return fmtZip
	case at(0, "\xfd7zXZ\x00"):
		return fmtXz
	case at(0, "\x28\xb5\x2f\xfd"), len(head) >= 4 && head[0]&0xf0 == 0x50 && at(1, "\x2a\x4d\x18"):
		return fmtZstd
	case at(0, "BZh") && len(head) >= 10 && head[3] >= '1' && head[3] <= '9' &&
		(at(4, "\x31\x41\x59\x26\x53\x59") || at(4, "\x17\x72\x45\x38\x50\x90")):
		return fmtBzip2
	case at(0, "7z\xbc\xaf\x27\x1c"):
		return fmt7z
	case at(0, "\x04\x22\x4d\x18"):
		return fmtLZ4
	case at(0, "\x89PNG\r\n\x1a\n"):
		return fmtPNG
	case at(0, "\xff\xd8\xff") && len(head) >= 4 && (head[3] >= 0xc0 && head[3] != 0xff):
		return fmtJPEG
	case at(0, "GIF87a"), at(0, "GIF89a"):
		return fmtGIF
	case at(0, "RIFF") && at(8, "WEBP"):
		return fmtWebP
	case at(0, "RIFF") && at(8, "WAVE"):
		return fmtWAV
	case at(0, "RIFF") && at(8, "AVI "):
		return fmtAVI
	case at(0, "II*\x00"), at(0, "MM\x00*"):
		return fmtTIFF
	case at(0, "BM") && len(head) >= 10 && int64(binary.LittleEndian.Uint32(head[2:])) == size &&
		binary.LittleEndian.Uint32(head[6:]) == 0:
		return fmtBMP
	case at(0, "%PDF-"):
		return fmtPDF
	case at(0, "PAR1"):
		return fmtParquet
	case at(0, "\x93NUMPY") && len(head) >= 7 && head[6] >= 1 && head[6] <= 3:
		return fmtNpy
	case at(0, "\x89HDF\r\n\x1a\n"), at(512, "\x89HDF\r\n\x1a\n"), at(1024, "\x89HDF\r\n\x1a\n"), at(2048, "\x89HDF\r\n\x1a\n"):
		return fmtHDF5
	case at(0, "CDF\x01"), at(0, "CDF\x02"), at(0, "CDF\x05"):
		return fmtNetCDF
	case at(0, "!<arch>\n"):
		return fmtAr
	case at(257, "ustar\x00"), at(257, "ustar  \x00"):
		return fmtTar
	case at(0, "ARROW1"), at(0, "FEA1"):
		return fmtArrow
	case at(0, "Obj\x01"):
		return fmtAvro
	case at(0, "ORC"):
		return fmtORC
	case at(0, "fLaC"):
		return fmtFLAC
	case at(0, "OggS\x00"):
		return fmtOgg
	case at(0, "ID3") && len(head) >= 4 && head[3] >= 2 && head[3] <= 4, isMP3Frame(head):
		return fmtMP3
	case at(4, "ftyp"):
		return fmtISOBMFF
	case at(0, "\x1a\x45\xdf\xa3"):
		return fmtEBML
	case at(0, "GGUF"):
		return fmtGGUF
	case at(4, "TFL3"):
		return fmtTFLite
	case at(0, "SQLite format 3\x00"):
		return fmtSQLite
	case (at(0, "PACK") || at(0, "\xfftOc")) && len(head) >= 8 && binary.BigEndian.Uint32(head[4:]) >= 2 && binary.BigEndian.Uint32(head[4:]) <= 3:
		return fmtGitPack
	case isZlib(head):
		return fmtZlib
	case isPickle(head):
		return fmtPickle
	case safetensorsHeader(head, size) > 0:
		return fmtSafetensors
	case isTFRecord(head):
		return fmtTFRecord
	}
	return fmtNone
}

// isZlib reports whether head opens a zlib stream (RFC 1950): a header
// whose check bits hold (CMF·256 + FLG ≡ 0 mod 31), deflate with a window
// of at most 32 KiB and no preset dictionary, then deflate data that
// inflates without error as far as head goes and, when it ends there, its
// Adler-32. Random bytes pass the header about once in 2,000 and the rest
// almost never: a structure check, not a magic number.
func isZlib(h []byte) bool {
	if len(h) < 8 || h[0]&0x0f != 8 || h[0]>>4 > 7 || h[1]&0x20 != 0 || (uint16(h[0])<<8|uint16(h[1]))%31 != 0 {
		return false
	}
	r, err := zlib.NewReader(bytes.NewReader(h))
	if err != nil {
		return false
	}
	// A stream that ends inside head must end with its Adler-32; one that
	// goes on past head must have inflated cleanly so far.
	_, err = io.Copy(io.Discard, io.LimitReader(r, 1<<20))
	return err == nil || errors.Is(err, io.ErrUnexpectedEOF)
}

// isMP3Frame reports whether head opens with an MPEG audio frame header
// (sync, layer III, a valid bitrate and sample rate).
func isMP3Frame(h []byte) bool {
	if len(h) < 4 || h[0] != 0xff || h[1]&0xe0 != 0xe0 || h[1]&0x06 != 0x02 || h[1]&0x18 == 0x08 {
		return false
	}
	bitrate, rate := h[2]>>4, (h[2]>>2)&3
	return bitrate != 0 && bitrate != 15 && rate != 3
}

// isPickle reports whether head opens a pickle of protocol 2 to 5: PROTO
// and its version, then a FRAME (protocol 4+) or a common first opcode.
func isPickle(h []byte) bool {
	if len(h) < 3 || h[0] != 0x80 || h[1] < 2 || h[1] > 5 {
		return false
	}
	if h[1] >= 4 {
		return h[2] == 0x95 // FRAME
	}
	switch h[2] {
	case '}', ']', ')', '(', 'c', 'q', 'X', 'K', 'M', 'J', 'N', 'G', 'U', 0x8a, 0x8c, 0x88, 0x89:
		return true
	}
	return false
}

// maxSafetensorsHeader bounds the JSON header's length (the reference
// implementation refuses more than 100 MB).
const maxSafetensorsHeader = 100 << 20

// safetensorsHeader returns the length of the JSON header of a
// .safetensors file opening with head, or 0 when head is not one: 8 bytes
// of little-endian length N, then N bytes of JSON object ('{' first), with
// 8+N no more than the file's size.
func safetensorsHeader(head []byte, size int64) uint64 {
	if len(head) < 10 {
		return 0
	}
	n := binary.LittleEndian.Uint64(head)
	if n < 2 || n > maxSafetensorsHeader || (size >= 0 && n > uint64(max(size-8, 0))) {
		return 0
	}
	if head[8] != '{' {
		return 0
	}
	// The header starts with a key, or is empty ("{}"), possibly after spaces.
	for _, c := range head[9:min(len(head), 8+int(n))] {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '"', '}':
			return n
		}
		return 0
	}
	return n
}

// crc32c is the Castagnoli table TFRecord checksums use.
var crc32c = crc32.MakeTable(crc32.Castagnoli)

// isTFRecord reports whether head opens a TFRecord file: a little-endian
// uint64 record length followed by its masked CRC-32C.
func isTFRecord(h []byte) bool {
	if len(h) < 12 {
		return false
	}
	c := crc32.Checksum(h[:8], crc32c)
	masked := (c>>15 | c<<17) + 0xa282ead8
	return binary.LittleEndian.Uint32(h[8:]) == masked
}

// parquetTail reports whether tail (a file's last bytes) ends with
// Parquet's footer magic.
func parquetTail(tail []byte) bool { return bytes.HasSuffix(tail, []byte("PAR1")) }

// textBad counts the bytes of b that text does not have: control
// characters other than tab, newline, carriage return, form feed and
// escape, DEL, and bytes that are not part of valid UTF-8. A sequence cut
// by either end of b does not count. UTF-16 with a byte order mark is
// judged by its code units.
func textBad(b []byte) int { return textBadUpTo(b, len(b)) }

// textBadUpTo is textBad, but stops counting once it passes limit: all
// callers want to know is whether a block is text, mixed or neither.
func textBadUpTo(b []byte, limit int) int {
	if len(b) >= 2 && (b[0] == 0xff && b[1] == 0xfe || b[0] == 0xfe && b[1] == 0xff) {
		return utf16Bad(b[2:], b[0] == 0xff)
	}
	bad := 0
	i := 0
	for i < len(b) && i < 3 && !utf8.RuneStart(b[i]) {
		i++ // the tail of a character cut at the block's start
	}
	for i < len(b) && bad <= limit {
		if i+8 <= len(b) && printableASCII(binary.LittleEndian.Uint64(b[i:])) {
			i += 8
			continue
		}
		c := b[i]
		if c < utf8.RuneSelf {
			if (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != 0x1b) || c == 0x7f {
				bad++
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			if len(b)-i < utf8.UTFMax && !utf8.FullRune(b[i:]) {
				break // a character cut at the block's end
			}
			bad++
			i++
			continue
		}
		i += size
	}
	return bad
}

// printableASCII reports whether the 8 bytes of w are all in 0x20-0x7e:
// no high bit set, none below 0x20 (the classic "has a byte less than n"
// test, exact for bytes without the high bit) and none equal to 0x7f.
func printableASCII(w uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	if w&highs != 0 {
		return false
	}
	if (w-0x20*ones)&^w&highs != 0 {
		return false // a byte below 0x20
	}
	x := w ^ 0x7f*ones // DEL becomes zero
	return (x-ones)&^x&highs == 0
}

// utf16Bad counts code units of UTF-16 text that are control characters
// (other than tab, newline, carriage return) or unpaired surrogates.
func utf16Bad(b []byte, little bool) int {
	bad := 0
	for i := 0; i+1 < len(b); i += 2 {
		u := uint16(b[i])<<8 | uint16(b[i+1])
		if little {
			u = uint16(b[i+1])<<8 | uint16(b[i])
		}
		switch {
		case u < 0x20 && u != '\t' && u != '\n' && u != '\r':
			bad += 2
		case u >= 0xdc00 && u <= 0xdfff:
			bad += 2
		case u >= 0xd800 && u <= 0xdbff:
			i += 2 // a pair; the low half is not checked
		}
	}
	return bad
}

// isText reports whether b reads as text: at most 1% of its bytes are
// ones text does not have (see textBad).
func isText(b []byte) bool {
	return len(b) > 0 && textBad(b)*100 <= len(b)
}
