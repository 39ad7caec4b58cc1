// Package snapshot turns a directory into a tree of blobs in a vault and
// back: scan, change detection against a parent, archive, restore, diff.
package snapshot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"

	"github.com/custodyhq/custody/internal/vault"
)

// NodeType is what kind of filesystem entry a node records.
type NodeType string

const (
	TypeFile    NodeType = "file"
	TypeDir     NodeType = "dir"
	TypeSymlink NodeType = "symlink"
)

// Xattr is one extended attribute. Names are kept as bytes on the way in
// and out through Name/NameRaw like node names (RawName, SetName).
type Xattr struct {
	Name    string `json:"name,omitempty"`
	NameRaw []byte `json:"name_raw,omitempty"`
	Value   []byte `json:"value"`
}

// RawName is the attribute's name as the filesystem has it.
func (x *Xattr) RawName() []byte {
	if x.NameRaw != nil {
		return x.NameRaw
	}
	return []byte(x.Name)
}

// SetName stores name in Name when it is valid UTF-8, else in NameRaw.
func (x *Xattr) SetName(name []byte) { x.Name, x.NameRaw = splitRaw(name) }

// splitRaw puts b in the string field of a string/raw pair when it is
// valid UTF-8 (readable JSON), else in the raw field (base64 in JSON, which
// keeps every byte).
func splitRaw(b []byte) (string, []byte) {
	if utf8.Valid(b) {
		return string(b), nil
	}
	return "", slices.Clone(b)
}

// Node is one entry of a directory. Names and link targets that are valid
// UTF-8 are stored in Name / LinkTarget; others in the *Raw fields (base64
// in JSON), because JSON strings cannot carry arbitrary bytes.
type Node struct {
	Name          string     `json:"name,omitempty"`
	NameRaw       []byte     `json:"name_raw,omitempty"`
	Type          NodeType   `json:"type"`
	Mode          uint32     `json:"mode"` // permission and setuid/setgid/sticky bits (07777)
	UID           uint32     `json:"uid"`
	GID           uint32     `json:"gid"`
	User          string     `json:"user,omitempty"`
	Group         string     `json:"group,omitempty"`
	Size          uint64     `json:"size,omitempty"`
	ModTime       int64      `json:"mtime"` // Unix nanoseconds
	ChangeTime    int64      `json:"ctime"` // Unix nanoseconds; change detection only
	Inode         uint64     `json:"inode,omitempty"`
	Device        uint64     `json:"dev,omitempty"`
	Links         uint64     `json:"links,omitempty"`
	Content       []vault.ID `json:"content,omitempty"`
	Subtree       *vault.ID  `json:"subtree,omitempty"`
	LinkTarget    string     `json:"target,omitempty"`
	LinkTargetRaw []byte     `json:"target_raw,omitempty"`
	Xattrs        []Xattr    `json:"xattrs,omitempty"`
	// ChangedWhileRead marks a file whose size or times changed while it
	// was read, even after retries: its content may mix two states.
	ChangedWhileRead bool `json:"changed_while_read,omitempty"`
}

// RawName is the entry's name as the filesystem has it.
func (n *Node) RawName() []byte {
	if n.NameRaw != nil {
		return n.NameRaw
	}
	return []byte(n.Name)
}

// SetName stores name in Name when it is valid UTF-8, else in NameRaw.
func (n *Node) SetName(name []byte) { n.Name, n.NameRaw = splitRaw(name) }

// RawLinkTarget is the symlink's target as the filesystem has it.
func (n *Node) RawLinkTarget() []byte {
	if n.LinkTargetRaw != nil {
		return n.LinkTargetRaw
	}
	return []byte(n.LinkTarget)
}

// SetLinkTarget stores target like SetName does names.
func (n *Node) SetLinkTarget(target []byte) { n.LinkTarget, n.LinkTargetRaw = splitRaw(target) }

// Tree is one directory: its entries sorted by raw name bytes, unique.
type Tree struct {
	Nodes []Node `json:"nodes"`
}

// Sort orders the nodes by raw name, as EncodeTree requires.
func (t *Tree) Sort() {
	slices.SortFunc(t.Nodes, func(a, b Node) int { return bytes.Compare(a.RawName(), b.RawName()) })
}

// Find returns the node named name, or nil.
func (t *Tree) Find(name []byte) *Node {
	i, ok := slices.BinarySearchFunc(t.Nodes, name, func(n Node, name []byte) int { return bytes.Compare(n.RawName(), name) })
	if !ok {
		return nil
	}
	return &t.Nodes[i]
}

// ErrBadTree is wrapped by every tree validation failure.
var ErrBadTree = errors.New("malformed tree")

// EncodeTree is the canonical encoding of a valid tree: the same tree always
// gives the same bytes, so unchanged directories deduplicate.
func EncodeTree(t *Tree) ([]byte, error) {
	if err := t.validate(); err != nil {
		return nil, err
	}
	if t.Nodes == nil {
		t = &Tree{Nodes: []Node{}}
	}
	b, err := json.Marshal(t)
	if err != nil {
		return nil, fmt.Errorf("encode tree: %w", err)
	}
	return b, nil
}

// DecodeTree parses and validates a tree. It never trusts its input: a
// vault's trees may have been written by an attacker who has the key.
func DecodeTree(b []byte) (*Tree, error) {
	var t Tree
	if err := json.Unmarshal(b, &t); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTree, err)
	}
	if err := t.validate(); err != nil {
		return nil, err
	}
	return &t, nil
}

func (t *Tree) validate() error {
	var prev []byte
	for i := range t.Nodes {
		n := &t.Nodes[i]
		name := n.RawName()
		if err := validName(name); err != nil {
			return fmt.Errorf("%w: entry %d: %v", ErrBadTree, i, err)
		}
		if n.Name != "" && n.NameRaw != nil {
			return fmt.Errorf("%w: entry %q has both name and name_raw", ErrBadTree, name)
		}
		if n.LinkTarget != "" && n.LinkTargetRaw != nil {
			return fmt.Errorf("%w: entry %q has both target and target_raw", ErrBadTree, name)
		}
		if i > 0 && bytes.Compare(prev, name) >= 0 {
			return fmt.Errorf("%w: entries not sorted or not unique at %q", ErrBadTree, name)
		}
		prev = name
		if n.Mode&^0o7777 != 0 {
			return fmt.Errorf("%w: entry %q: mode %o has bits beyond 07777", ErrBadTree, name, n.Mode)
		}
		switch n.Type {
		case TypeFile:
			if n.Subtree != nil || len(n.RawLinkTarget()) > 0 {
				return fmt.Errorf("%w: file %q has a subtree or link target", ErrBadTree, name)
			}
		case TypeDir:
			if n.Subtree == nil || len(n.Content) > 0 || len(n.RawLinkTarget()) > 0 {
				return fmt.Errorf("%w: directory %q needs a subtree and nothing else", ErrBadTree, name)
			}
		case TypeSymlink:
			if n.Subtree != nil || len(n.Content) > 0 || len(n.RawLinkTarget()) == 0 {
				return fmt.Errorf("%w: symlink %q needs a target and nothing else", ErrBadTree, name)
			}
		default:
			return fmt.Errorf("%w: entry %q has unknown type %q", ErrBadTree, name, n.Type)
		}
		for _, x := range n.Xattrs {
			xn := x.RawName()
			if len(xn) == 0 || bytes.IndexByte(xn, 0) >= 0 || (x.Name != "" && x.NameRaw != nil) {
				return fmt.Errorf("%w: entry %q has a bad xattr name", ErrBadTree, name)
			}
		}
	}
	return nil
}

// validName accepts exactly the names one directory entry can have.
func validName(name []byte) error {
	switch {
	case len(name) == 0:
		return errors.New("empty name")
	case len(name) > 255:
		return errors.New("name longer than 255 bytes")
	case bytes.Equal(name, []byte(".")) || bytes.Equal(name, []byte("..")):
		return fmt.Errorf("name %q is not allowed", name)
	case bytes.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q contains '/' or NUL", name)
	}
	return nil
}
