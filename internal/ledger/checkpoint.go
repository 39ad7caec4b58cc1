package ledger

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// A checkpoint is a C2SP tlog-checkpoint body,
//
//	<origin>\n<tree size in decimal>\n<base64 root hash>\n
//
// signed as a note (golang.org/x/mod/sumdb/note) with the log's Ed25519 key.

// Keys are a log's signing and verifier keys in note format. Verifier is
// what auditors keep: "<origin>+<key hash>+<base64 key>".
type Keys struct {
	Signer   note.Signer
	Verifier string
}

// NewKeys makes the note keys of the log named origin from an Ed25519
// seed (32 bytes), so the vault can keep one seed and derive the rest.
func NewKeys(origin string, seed []byte) (*Keys, error) {
	if len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("ledger key: seed of %d bytes, want %d", len(seed), ed25519.SeedSize)
	}
	pub := ed25519.NewKeyFromSeed(seed).Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w", err)
	}
	// vkey is name+hash+base64(alg||pub); the signer key shares name and
	// hash and carries alg||seed.
	parts := strings.Split(vkey, "+")
	skey := "PRIVATE+KEY+" + parts[0] + "+" + parts[1] + "+" + base64.StdEncoding.EncodeToString(append([]byte{1}, seed...))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("ledger key: %w", err)
	}
	return &Keys{Signer: signer, Verifier: vkey}, nil
}

// FormatCheckpoint is the checkpoint body of tree t.
func FormatCheckpoint(origin string, t tlog.Tree) []byte {
	return []byte(fmt.Sprintf("%s\n%d\n%s\n", origin, t.N, base64.StdEncoding.EncodeToString(t.Hash[:])))
}

// SignCheckpoint returns the signed note of tree t.
func SignCheckpoint(k *Keys, t tlog.Tree) ([]byte, error) {
	return note.Sign(&note.Note{Text: string(FormatCheckpoint(k.Signer.Name(), t))}, k.Signer)
}

// Errors of checkpoint verification.
var (
	ErrBadCheckpoint = errors.New("malformed checkpoint")
	ErrWrongLog      = errors.New("checkpoint is from another log")
	ErrBadSignature  = errors.New("checkpoint signature does not verify")
)

// Checkpoint is a verified checkpoint.
type Checkpoint struct {
	Origin string
	Tree   tlog.Tree
}

// OpenCheckpoint verifies a signed checkpoint against verifierKey and
// parses it. It never trusts its input.
func OpenCheckpoint(msg []byte, verifierKey string) (*Checkpoint, error) {
	v, err := note.NewVerifier(verifierKey)
	if err != nil {
		return nil, fmt.Errorf("verifier key: %w", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &invalid):
			return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
		case errors.As(err, &unverified):
			return nil, fmt.Errorf("%w: it carries no valid signature by %s", ErrWrongLog, v.Name())
		}
		return nil, fmt.Errorf("%w: %v", ErrBadCheckpoint, err)
	}
	c, err := ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	if c.Origin != v.Name() {
		return nil, fmt.Errorf("%w: origin %q, key %q", ErrWrongLog, c.Origin, v.Name())
	}
	return c, nil
}

// ParseCheckpoint parses a checkpoint body (without checking any signature).
func ParseCheckpoint(body []byte) (*Checkpoint, error) {
	lines := strings.Split(string(body), "\n")
	if len(lines) < 4 || lines[len(lines)-1] != "" || lines[0] == "" {
		return nil, fmt.Errorf("%w: want origin, size and root hash lines", ErrBadCheckpoint)
	}
	n, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || n < 0 || lines[1] != strconv.FormatInt(n, 10) {
		return nil, fmt.Errorf("%w: tree size %q", ErrBadCheckpoint, lines[1])
	}
	h, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(h) != tlog.HashSize {
		return nil, fmt.Errorf("%w: root hash %q", ErrBadCheckpoint, lines[2])
	}
	c := &Checkpoint{Origin: lines[0], Tree: tlog.Tree{N: n}}
	copy(c.Tree.Hash[:], h)
	if !bytes.Equal(FormatCheckpoint(c.Origin, c.Tree), body[:len(FormatCheckpoint(c.Origin, c.Tree))]) {
		return nil, fmt.Errorf("%w: not in canonical form", ErrBadCheckpoint)
	}
	return c, nil
}
