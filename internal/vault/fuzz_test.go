package vault

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"testing"
)

// Every decoder of stored bytes is fuzzed: a vault's objects may have been
// written by an attacker, and no input may crash or hang a reader.

func FuzzDecodeIndex(f *testing.F) {
	f.Add(encodeIndex(nil))
	f.Add(encodeIndex([]packIndex{{Pack: ID{1}, Blobs: []blobEntry{{Type: TreeBlob, ID: ID{2}, Offset: 0, Length: 40, RawLen: 10}}}}))
	f.Add([]byte("CIX1\xff\xff\xff\xff"))
	f.Fuzz(func(t *testing.T, b []byte) {
		packs, err := decodeIndex(b)
		if err != nil {
			return
		}
		// whatever decodes re-encodes to the same bytes
		if got := encodeIndex(packs); string(got) != string(b) {
			t.Fatalf("re-encoding differs")
		}
	})
}

func FuzzDecodePackHeader(f *testing.F) {
	p := &packer{hash: sha256.New()}
	p.add(DataBlob, ID{1}, make([]byte, 40), 12)
	p.add(TreeBlob, ID{2}, make([]byte, 50), 30)
	hdr := []byte(packMagic + "\x02\x00\x00\x00")
	for _, e := range p.entries {
		hdr = append(hdr, byte(e.Type))
		hdr = append(hdr, e.ID[:]...)
		hdr = append(hdr, byte(e.Length), 0, 0, 0, byte(e.RawLen), 0, 0, 0)
	}
	f.Add(hdr, int64(90))
	f.Fuzz(func(t *testing.T, b []byte, off int64) {
		es, err := decodePackHeader(b, off)
		if err != nil {
			return
		}
		var end int64
		for _, e := range es {
			if int64(e.Offset) != end {
				t.Fatalf("blob offsets not contiguous")
			}
			end += int64(e.Length)
		}
		if end != off {
			t.Fatalf("blobs end at %d, header at %d", end, off)
		}
	})
}

func FuzzPackHeaderLen(f *testing.F) {
	f.Add([]byte{100, 0, 0, 0}, int64(1000))
	f.Fuzz(func(t *testing.T, tail []byte, size int64) {
		n, err := packHeaderLen(tail, size)
		if err == nil && (n <= 0 || n+4 > size) {
			t.Fatalf("accepted header length %d in %d bytes", n, size)
		}
	})
}

func FuzzDecodeKeyFile(f *testing.F) {
	kf, _ := newKeyFile(make([]byte, 32), "id", "pw", KDFParams{Time: 1, MemoryKiB: 8, Threads: 1})
	b, _ := json.Marshal(kf)
	f.Add(b)
	f.Add([]byte(`{"kdf":"argon2id","params":{"time":4000000000,"memory_kib":4000000000,"threads":255}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := decodeKeyFile(b)
		if err != nil {
			return
		}
		if k.Params.MemoryKiB > maxKDFMemory || k.Params.Time > maxKDFTime {
			t.Fatalf("accepted costly kdf parameters %+v", k.Params)
		}
	})
}

func FuzzDecodeMarker(f *testing.F) {
	f.Add([]byte(`{"format":"custody-vault","version":1,"id":"0000000000000000000000000000000000000000000000000000000000000000"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMarker(b)
		if err == nil && (m.Version != FormatVersion || len(m.ID) != 64) {
			t.Fatalf("accepted marker %+v", m)
		}
	})
}

func FuzzDecodeConfig(f *testing.F) {
	c, _ := json.Marshal(config{Version: 1, ID: "x", Chunker: DefaultChunker, PackSize: DefaultPackSize, SigningKey: make([]byte, 32)})
	f.Add(c)
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeConfig(b)
		if err == nil && (c.Chunker.Min >= c.Chunker.Max || len(c.SigningKey) != ed25519.SeedSize) {
			t.Fatalf("accepted config %+v", c)
		}
	})
}

func FuzzDecodeVersion(f *testing.F) {
	pub, priv, _ := ed25519.GenerateKey(nil)
	body, _ := json.Marshal(Version{Dataset: "d"})
	sig := ed25519.Sign(priv, append([]byte(versionSigContext), body...))
	good, _ := json.Marshal(signedVersion{Version: body, Signature: sig})
	f.Add(good)
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeVersion(b, pub) // must not panic; forging needs the key
	})
}

func FuzzParseDiskIndex(f *testing.F) {
	f.Add([]byte("CIC1\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < diskHeader {
			return
		}
		d, err := parseDiskIndex(b)
		if err != nil {
			return
		}
		d.lookup(ID{}, nil)
		d.each(func(ID, location) error { return nil })
	})
}

func FuzzDecodePending(f *testing.F) {
	good, _ := json.Marshal(pendingDeletion{Packs: []ID{{1}, {2}}})
	f.Add(good)
	f.Add([]byte(`{"packs":["zz"]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := decodePending(b)
		if err != nil {
			return
		}
		again, _ := json.Marshal(p)
		if q, err := decodePending(again); err != nil || len(q.Packs) != len(p.Packs) {
			t.Fatalf("pending does not round-trip: %v", err)
		}
	})
}
