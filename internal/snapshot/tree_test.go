package snapshot

import (
	"bytes"
	"testing"

	"github.com/custodyhq/custody/internal/vault"
)

// FuzzDecodeTree checks that DecodeTree never panics and that whatever it
// accepts has one canonical encoding: encoding it and decoding that again
// gives the same bytes, so a tree's id is stable.
func FuzzDecodeTree(f *testing.F) {
	sub := vault.ID{1, 2, 3}
	var file, dir, link, raw Node
	file = Node{Name: "file", Type: TypeFile, Mode: 0o644, Size: 3, ModTime: 1, Content: []vault.ID{{9}},
		Xattrs: []Xattr{{Name: "user.a", Value: []byte("v")}}, Inode: 5, Links: 2, UID: 1000, User: "u"}
	dir = Node{Name: "dir", Type: TypeDir, Mode: 0o755, Subtree: &sub}
	link = Node{Name: "link", Type: TypeSymlink, Mode: 0o777, LinkTarget: "../x"}
	raw.SetName([]byte("\xff\n"))
	raw.Type = TypeSymlink
	raw.SetLinkTarget([]byte("\xfe"))
	for _, t := range []*Tree{{}, {Nodes: []Node{file}}, {Nodes: []Node{dir, file, link, raw}}} {
		t.Sort()
		b, err := EncodeTree(t)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(`{"nodes":[{"name":"a","name_raw":"YQ==","type":"file"}]}`))
	f.Add([]byte(`{"nodes":[{"name":"..","type":"file"}]}`))
	f.Add([]byte(`{"nodes":[{"name":"l","type":"symlink","target":"a","target_raw":"Yg=="}]}`))
	f.Add([]byte(`{"nodes":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		t1, err := DecodeTree(b)
		if err != nil {
			return
		}
		enc1, err := EncodeTree(t1)
		if err != nil {
			t.Fatalf("a decoded tree does not encode: %v", err)
		}
		t2, err := DecodeTree(enc1)
		if err != nil {
			t.Fatalf("an encoded tree does not decode: %v\n%s", err, enc1)
		}
		enc2, err := EncodeTree(t2)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(enc1, enc2) {
			t.Fatalf("encoding is not stable:\n%s\n%s", enc1, enc2)
		}
		for i := range t2.Nodes {
			n := &t2.Nodes[i]
			if n.LinkTarget != "" && n.LinkTargetRaw != nil {
				t.Fatalf("accepted a symlink with two targets: %q and %q", n.LinkTarget, n.LinkTargetRaw)
			}
			if name := n.RawName(); len(name) == 0 || bytes.ContainsAny(name, "/\x00") || string(name) == "." || string(name) == ".." {
				t.Fatalf("accepted name %q", name)
			}
		}
	})
}
