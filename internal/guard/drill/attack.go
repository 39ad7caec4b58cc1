// Package drill simulates ransomware attacks and benign heavy work on a
// scratch tree, for the guard's self-test and tests.
//
// Everything here really damages files: point it only at a tree made for
// the purpose (see Prepare), and run it as a separate, unprivileged process
// (see Command and Main) so the guard sees a foreign principal it may kill.
package drill

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Variants of attack.
const (
	EncryptRename  = "encrypt-rename"   // ciphertext to a new name, original unlinked
	EncryptInPlace = "encrypt-in-place" // ciphertext over the original bytes
	Intermittent16 = "intermittent-16"  // every other 16 bytes encrypted in place
	Intermittent4K = "intermittent-4k"  // every other 4 KiB block encrypted in place
	CopyDelete     = "copy-delete"      // encrypted copies, originals unlinked per directory
	MassDelete     = "mass-delete"      // every file unlinked
	Slow           = "slow"             // EncryptInPlace at SlowRate
)

// Variants lists every attack variant.
var Variants = []string{EncryptRename, EncryptInPlace, Intermittent16, Intermittent4K, CopyDelete, MassDelete, Slow}

// SlowRate is the Slow variant's default rate in files per second: one file
// every 5 s, under most per-minute thresholds.
const SlowRate = 0.2

// DefaultMaxDenied is how many consecutive EPERM/EACCES failures make an
// attack give up when AttackOptions.MaxDenied is 0.
const DefaultMaxDenied = 5

// NoteName is the ransom note dropped in each directory when
// AttackOptions.Note is set.
const NoteName = "README_DECRYPT.txt"

// CopyExt is the extension CopyDelete gives its encrypted copies.
const CopyExt = ".enc"

// ErrLockedOut means the attack gave up because file operations kept being
// denied: the guard's lockout worked.
var ErrLockedOut = errors.New("drill: locked out: file operations denied")

// AttackOptions says what to attack and how.
type AttackOptions struct {
	Variant string
	// Dir is the tree to attack: every regular file under it, in sorted
	// directory-walk order (filepath.WalkDir's), skipping nothing.
	// Symbolic links are not followed.
	Dir string
	// Rate is files per second; 0 is as fast as possible (SlowRate for Slow).
	Rate float64
	// Max stops the attack after this many files attempted; 0 is all.
	Max int
	// MaxDenied is how many consecutive EPERM/EACCES failures end the
	// attack with ErrLockedOut; 0 is DefaultMaxDenied.
	MaxDenied int
	// Note drops a ransom note (NoteName) in each directory visited.
	Note bool
	// Ext is the extension EncryptRename appends, with or without the dot;
	// empty picks a random 6-character one per run, which no extension
	// list knows.
	Ext string
	// Progress, if set, gets one JSON line (a ProgressLine) per file
	// damaged, written with one Write and flushed if it has Flush.
	Progress io.Writer
}

// Result is what an attack did.
type Result struct {
	Damaged []string // original paths encrypted, renamed or deleted, in order
	Denied  int      // file operations refused with EPERM/EACCES
	Elapsed time.Duration
}

// ProgressLine is one line of AttackOptions.Progress.
type ProgressLine struct {
	Time time.Time `json:"time"`
	Path string    `json:"path"`         // the original file
	Op   string    `json:"op"`           // encrypt, encrypt-partial, rename, delete
	To   string    `json:"to,omitempty"` // the new name, for rename and copies
}

// Attack runs the attack until every file is done, ctx ends (ctx.Err() is
// returned), or file operations fail with EPERM/EACCES MaxDenied times in a
// row (ErrLockedOut, wrapped with the count of files damaged). The Result is
// valid in every case.
func Attack(ctx context.Context, o AttackOptions) (Result, error) {
	a, err := newAttacker(o)
	if err != nil {
		return Result{}, err
	}
	start := time.Now()
	err = a.walk(ctx, o.Dir)
	if errors.Is(err, errStop) {
		err = nil
	}
	a.res.Elapsed = time.Since(start)
	if errors.Is(err, ErrLockedOut) {
		err = fmt.Errorf("%w (after damaging %d files, %d denied)", err, len(a.res.Damaged), a.res.Denied)
	}
	return a.res, err
}

// errStop ends the walk early without an error (Max reached).
var errStop = errors.New("stop")

type attacker struct {
	o         AttackOptions
	block     cipher.Block
	rate      float64
	maxDenied int
	started   time.Time
	attempted int
	inARow    int // consecutive denials
	res       Result
}

func newAttacker(o AttackOptions) (*attacker, error) {
	if o.Dir == "" {
		return nil, errors.New("drill: no directory to attack")
	}
	if fi, err := os.Stat(o.Dir); err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("drill: %s is not a directory", o.Dir)
	}
	a := &attacker{o: o, rate: o.Rate, maxDenied: o.MaxDenied}
	switch o.Variant {
	case Slow:
		if a.rate == 0 {
			a.rate = SlowRate
		}
	case EncryptRename, EncryptInPlace, Intermittent16, Intermittent4K, CopyDelete, MassDelete:
	default:
		return nil, fmt.Errorf("drill: unknown attack variant %q (want one of %s)", o.Variant, strings.Join(Variants, ", "))
	}
	if a.rate < 0 {
		return nil, fmt.Errorf("drill: negative rate %v", a.rate)
	}
	if a.maxDenied <= 0 {
		a.maxDenied = DefaultMaxDenied
	}
	switch {
	case strings.ContainsAny(o.Ext, `/\`) || o.Ext == ".":
		return nil, fmt.Errorf("drill: extension %q is not a file name extension", o.Ext)
	case o.Ext == "":
		a.o.Ext = "." + randomName(6)
	case !strings.HasPrefix(o.Ext, "."):
		a.o.Ext = "." + o.Ext
	}
	key := make([]byte, 32) // AES-256
	rand.Read(key)
	var err error
	if a.block, err = aes.NewCipher(key); err != nil {
		return nil, err
	}
	return a, nil
}

// walk visits dir's entries in sorted order, recursing into directories
// as it meets them, so files come in filepath.WalkDir order. The listing is
// read before anything is written, so the attack never revisits its own
// output.
func (a *attacker) walk(ctx context.Context, dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return a.failed(dir, err)
	}
	if a.o.Note {
		if err := os.WriteFile(filepath.Join(dir, NoteName), []byte(ransomNote), 0o644); err != nil {
			if err := a.failed(dir, err); err != nil {
				return err
			}
		}
	}
	var copied []string // CopyDelete: originals to unlink when the directory is done
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if e.IsDir() {
			if err = a.walk(ctx, p); errors.Is(err, errStop) {
				break
			} else if err != nil {
				return err
			}
			continue
		}
		if !e.Type().IsRegular() {
			continue
		}
		if a.o.Max > 0 && a.attempted >= a.o.Max {
			err = errStop // finish this directory's deletions first
			break
		}
		if err := a.pace(ctx); err != nil {
			return err
		}
		a.attempted++
		if err := a.file(p, &copied); err != nil {
			return err
		}
	}
	for _, p := range copied {
		if err := a.damage(p, "delete", "", os.Remove(p)); err != nil {
			return err
		}
	}
	return err
}

// pace waits until the next file is due: file i starts at i/rate seconds.
func (a *attacker) pace(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.attempted == 0 {
		a.started = time.Now()
		return nil
	}
	if a.rate == 0 {
		return nil
	}
	due := a.started.Add(time.Duration(float64(a.attempted) / a.rate * float64(time.Second)))
	d := time.Until(due)
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// file attacks one file. copied collects CopyDelete's originals.
func (a *attacker) file(p string, copied *[]string) error {
	switch a.o.Variant {
	case EncryptRename:
		to := p + a.o.Ext
		return a.damage(p, "rename", to, a.encryptTo(p, to, true))
	case CopyDelete:
		err := a.encryptTo(p, p+CopyExt, false)
		if err == nil {
			*copied = append(*copied, p)
		}
		return a.damage(p, "", "", err) // reported when the original goes
	case EncryptInPlace, Slow:
		return a.damage(p, "encrypt", "", a.encryptInPlace(p, 0))
	case Intermittent16:
		return a.damage(p, "encrypt-partial", "", a.encryptInPlace(p, 16))
	case Intermittent4K:
		return a.damage(p, "encrypt-partial", "", a.encryptInPlace(p, 4096))
	case MassDelete:
		return a.damage(p, "delete", "", os.Remove(p))
	}
	return nil
}

// damage records the outcome of one operation on p. An empty op records
// nothing on success (an intermediate step). A file that vanished under us
// is skipped; a denial counts towards the lockout; other errors end the
// attack.
func (a *attacker) damage(p, op, to string, err error) error {
	if err != nil {
		return a.failed(p, err)
	}
	a.inARow = 0
	if op == "" {
		return nil
	}
	a.res.Damaged = append(a.res.Damaged, p)
	if a.o.Progress != nil {
		line, _ := json.Marshal(ProgressLine{Time: time.Now().UTC(), Path: p, Op: op, To: to})
		if _, err := a.o.Progress.Write(append(line, '\n')); err != nil {
			return fmt.Errorf("drill: progress: %w", err)
		}
		if f, ok := a.o.Progress.(interface{ Flush() error }); ok {
			if err := f.Flush(); err != nil {
				return fmt.Errorf("drill: progress: %w", err)
			}
		}
	}
	return nil
}

func (a *attacker) failed(p string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		a.res.Denied++
		a.inARow++
		if a.inARow >= a.maxDenied {
			return ErrLockedOut
		}
		return nil
	}
	return fmt.Errorf("drill: %s: %w", p, err)
}

// encryptTo writes p's ciphertext to the new file to, the way most
// families do (open, read, write new, unlink), and unlinks p if asked.
func (a *attacker) encryptTo(p, to string, unlink bool) (err error) {
	in, err := os.Open(p)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := out.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(to)
		}
	}()
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	w := cipher.StreamWriter{S: cipher.NewCTR(a.block, iv), W: out}
	if _, err := io.Copy(w, in); err != nil {
		return err
	}
	// A trailer like the families' key blobs: the IV, then a marker.
	if _, err := out.Write(append(iv, "DRILL1"...)); err != nil {
		return err
	}
	if unlink {
		return os.Remove(p)
	}
	return nil
}

// encryptInPlace overwrites p with its ciphertext, keeping name and size.
// With stripe > 0 only stripes 0, 2, 4, ... (each stripe bytes long) are
// encrypted; the odd ones are written back unchanged.
func (a *attacker) encryptInPlace(p string, stripe int) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	iv := make([]byte, aes.BlockSize)
	rand.Read(iv)
	ctr := cipher.NewCTR(a.block, iv)
	buf := make([]byte, 1<<20) // a multiple of 2*stripe for both stripe sizes
	ks := make([]byte, len(buf))
	var off int64
	for {
		n, rerr := f.ReadAt(buf, off)
		if n > 0 {
			chunk := buf[:n]
			clear(ks[:n])
			ctr.XORKeyStream(ks[:n], ks[:n]) // keystream for these offsets
			for i := 0; i < n; i++ {
				if stripe == 0 || (i/stripe)%2 == 0 {
					chunk[i] ^= ks[i]
				}
			}
			if _, err := f.WriteAt(chunk, off); err != nil {
				f.Close()
				return err
			}
			off += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			f.Close()
			return rerr
		}
	}
	return f.Close()
}

// randomName returns n random characters from [a-z0-9].
func randomName(n int) string {
	const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}

const ransomNote = `YOUR FILES HAVE BEEN ENCRYPTED

This is a Custody guard drill, not a real attack. The files in this
directory were encrypted with a random key that was never stored.
Restore them from a Custody snapshot.
`
