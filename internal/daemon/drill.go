package daemon

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/custodyhq/custody/internal/audit"
	"github.com/custodyhq/custody/internal/backend/local"
	"github.com/custodyhq/custody/internal/catalog"
	"github.com/custodyhq/custody/internal/guard"
	"github.com/custodyhq/custody/internal/guard/detect"
	"github.com/custodyhq/custody/internal/guard/drill"
	"github.com/custodyhq/custody/internal/snapshot"
	"github.com/custodyhq/custody/internal/vault"
	"github.com/custodyhq/custody/internal/watch"
)

// DrillOptions tune Drill.
type DrillOptions struct {
	Variant string  // an attack variant (drill.Variants); default encrypt-in-place
	Rate    float64 // files per second; 0: as fast as possible
	Files   int     // size of the generated dataset (default 1000)
	// From, if set, is a directory whose copy is attacked instead of a
	// generated dataset (the copy is made writable by the attacker).
	From string
	// Exe is the custody binary that runs the attacker (its hidden
	// drill-worker command) as Attacker.
	Exe      string
	Attacker uint32        // uid and gid of the attacking process (default 65534, nobody)
	Scratch  string        // where the scratch tree and vault go (default the system temp dir)
	Timeout  time.Duration // how long the attack may run unstopped (default 60 s; slow: 5 min)
	Keep     bool          // keep the scratch directory
	// Canaries places canary files in the dataset, as `guard --canaries`
	// does; without them only the other detectors can catch the attack.
	Canaries bool
	Logger   *slog.Logger
}

// DrillReport is what a drill measured.
type DrillReport struct {
	Variant        string        `json:"variant"`
	Canaries       bool          `json:"canaries"`
	Rate           float64       `json:"rate"`
	Files          int           `json:"files"`
	Detected       bool          `json:"detected"`
	Severity       string        `json:"severity,omitempty"`
	TimeToDetect   time.Duration `json:"time_to_detect_ns"`  // first damage to incident opened
	TimeToContain  time.Duration `json:"time_to_contain_ns"` // first damage to lockout
	Contained      bool          `json:"contained"`
	FilesLost      int           `json:"files_lost"` // damaged before the attack was stopped
	LostShare      float64       `json:"lost_share"` // FilesLost / Files
	GateClosed     bool          `json:"gate_closed"`
	Restored       int           `json:"restored"`
	Recoverable    bool          `json:"recoverable"` // every file back as before the attack
	Unrecovered    []string      `json:"unrecovered,omitempty"`
	AttackFinished bool          `json:"attack_finished"` // the attacker got through everything
	Scratch        string        `json:"scratch,omitempty"`
}

// Drill is the guard's self-test: on a scratch dataset with its own
// vault and catalog, it guards the tree, attacks it as an unprivileged
// user, and measures time to detect, time to contain, files lost,
// whether the gate closed and whether every damaged file came back.
// It needs root (fanotify and the lockout).
func Drill(ctx context.Context, o DrillOptions) (*DrillReport, error) {
	if o.Variant == "" {
		o.Variant = drill.EncryptInPlace
	}
	if o.Files <= 0 {
		o.Files = 1000
	}
	if o.Attacker == 0 {
		o.Attacker = 65534
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
		if o.Variant == drill.Slow {
			o.Timeout = 5 * time.Minute
		}
	}
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	scratch, err := os.MkdirTemp(o.Scratch, "custody-drill-")
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	if !o.Keep {
		defer os.RemoveAll(scratch)
	}
	if err := os.Chmod(scratch, 0o755); err != nil { // the attacker must reach the tree
		return nil, fmt.Errorf("drill: %w", err)
	}
	// The attacker runs a copy of this binary: where it is installed may
	// be closed to other users (/root/go/bin).
	if o.Exe, err = copyWorker(o.Exe, filepath.Join(scratch, "worker")); err != nil {
		return nil, err
	}
	data := filepath.Join(scratch, "dataset")
	if err := prepareDrillData(ctx, o, data); err != nil {
		return nil, err
	}
	var canaries []string
	if o.Canaries {
		if canaries, err = detect.PlaceCanaries(data, 3); err != nil {
			return nil, fmt.Errorf("drill: %w", err)
		}
		for _, c := range canaries { // the attacker's own files, as the rest
			if err := os.Chown(c, int(o.Attacker), int(o.Attacker)); err != nil {
				return nil, fmt.Errorf("drill: %w", err)
			}
		}
	}
	before, err := hashTree(data)
	if err != nil {
		return nil, err
	}
	rep := &DrillReport{Variant: o.Variant, Canaries: o.Canaries, Rate: o.Rate, Files: len(before)}
	if o.Keep {
		rep.Scratch = scratch
	}

	v, db, rec, err := drillVault(ctx, filepath.Join(scratch, "vault"), log)
	if err != nil {
		return nil, err
	}
	defer func() { v.Close(); v.Backend().Close(); db.Close() }()
	taken, err := snapshot.Take(ctx, v, "drill", "", "drill: before the attack", data, snapshot.ArchiveOptions{})
	if err != nil {
		return nil, fmt.Errorf("drill: baseline version: %w", err)
	}
	if err := db.PutVersion(ctx, catalog.VersionOf(taken.Version)); err != nil {
		return nil, err
	}
	src, err := watch.NewFanotify([]string{data}, watch.FanotifyOptions{Logger: log})
	if err != nil {
		return nil, fmt.Errorf("drill needs root (fanotify and the lockout): %w", err)
	}

	gctx, stopGuard := context.WithCancel(ctx)
	defer stopGuard()
	ready := make(chan struct{})
	guardDone := make(chan error, 1)
	go func() {
		guardDone <- Guard(gctx, v, rec, db, GuardOptions{Roots: []Root{{Path: data, Dataset: "drill"}}, Source: src, Logger: log,
			Guard: guard.Options{Datasets: []guard.Dataset{{Name: "drill", Path: data}}, Canaries: canaries},
			Ready: func() { close(ready) }})
	}()
	select {
	case <-ready:
	case err := <-guardDone:
		return nil, fmt.Errorf("drill: the guard did not start: %w", err)
	}

	damaged, finished, err := runAttack(ctx, o, data)
	if err == nil && finished {
		// An attack faster than the guard ended before its events were
		// all read: let the guard catch up before judging it.
		time.Sleep(2 * time.Second)
	}
	stopGuard()
	if gerr := <-guardDone; gerr != nil {
		return nil, fmt.Errorf("drill: the guard failed: %w", gerr)
	}
	if err != nil {
		return nil, err
	}
	rep.AttackFinished = finished
	rep.FilesLost = len(damaged.paths)
	rep.LostShare = float64(rep.FilesLost) / float64(max(rep.Files, 1))
	return rep, drillVerdict(ctx, v, db, rep, damaged.first, data, before)
}

// drillVerdict reads what the guard did and recovers the tree.
func drillVerdict(ctx context.Context, v *vault.Vault, db *catalog.DB, rep *DrillReport, first time.Time, data string, before map[string]string) error {
	incs, err := db.Incidents(ctx)
	if err != nil {
		return err
	}
	gates, err := db.Gates(ctx, false)
	if err != nil {
		return err
	}
	rep.GateClosed = len(gates) > 0
	if len(incs) == 0 {
		return nil
	}
	in := incs[len(incs)-1] // the first
	rep.Detected, rep.Severity = true, in.Severity
	if !first.IsZero() {
		rep.TimeToDetect = max(in.Opened.Sub(first), 0)
	}
	for _, a := range in.Actions {
		if strings.HasPrefix(a.Action, "lockout ") && a.Outcome == "ok" {
			rep.Contained = true
			if !first.IsZero() {
				rep.TimeToContain = max(a.Time.Sub(first), 0)
			}
			break
		}
	}
	files, err := db.IncidentFiles(ctx, in.ID)
	if err != nil {
		return err
	}
	res, err := guard.Restore(ctx, v, in, files)
	if err != nil {
		return fmt.Errorf("drill: recovery: %w", err)
	}
	rep.Restored = len(res.Restored)
	after, err := hashTree(data)
	if err != nil {
		return err
	}
	for p, h := range before {
		if after[p] != h {
			rep.Unrecovered = append(rep.Unrecovered, p)
		}
	}
	rep.Recoverable = len(rep.Unrecovered) == 0
	return nil
}

// prepareDrillData fills data with the tree to attack, owned by the
// attacker: a generated dataset, or a copy of o.From.
func prepareDrillData(ctx context.Context, o DrillOptions, data string) error {
	if o.From == "" {
		if err := os.Mkdir(data, 0o755); err != nil {
			return fmt.Errorf("drill: %w", err)
		}
		if err := os.Chown(data, int(o.Attacker), int(o.Attacker)); err != nil {
			return fmt.Errorf("drill: %w", err)
		}
		cmd := drill.Command(ctx, o.Exe, o.Attacker, o.Attacker, "drill-worker", "prepare", "--dir", data, "--files", fmt.Sprint(o.Files))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("drill: preparing the dataset: %v: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	if out, err := exec.CommandContext(ctx, "cp", "-a", "--", o.From, data).CombinedOutput(); err != nil {
		return fmt.Errorf("drill: copying %s: %v: %s", o.From, err, bytes.TrimSpace(out))
	}
	return filepath.WalkDir(data, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, int(o.Attacker), int(o.Attacker))
	})
}

// copyWorker copies the executable exe to dst, 0755.
func copyWorker(exe, dst string) (string, error) {
	src, err := os.Open(exe)
	if err != nil {
		return "", fmt.Errorf("drill: %w", err)
	}
	defer src.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return "", fmt.Errorf("drill: %w", err)
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		return "", fmt.Errorf("drill: copying the worker: %w", err)
	}
	if err := out.Close(); err != nil {
		return "", fmt.Errorf("drill: copying the worker: %w", err)
	}
	return dst, os.Chmod(dst, 0o755) // umask 077 took the rest
}

// drillVault makes a throwaway vault, catalog and recorder.
func drillVault(ctx context.Context, dir string, log *slog.Logger) (*vault.Vault, *catalog.DB, *audit.Recorder, error) {
	be, err := local.Create(dir)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("drill: %w", err)
	}
	pass := rand.Text()
	if err := vault.Init(ctx, be, pass, vault.InitOptions{KDF: vault.KDFParams{Time: 1, MemoryKiB: 8 << 10, Threads: 1}}); err != nil {
		be.Close()
		return nil, nil, nil, fmt.Errorf("drill: %w", err)
	}
	v, err := vault.Open(ctx, be, pass, vault.Options{CacheDir: filepath.Join(dir, "..", "cache"), Logger: log})
	if err != nil {
		be.Close()
		return nil, nil, nil, fmt.Errorf("drill: %w", err)
	}
	db, err := catalog.Open(ctx, filepath.Join(dir, "catalog.db"))
	if err != nil {
		v.Close()
		be.Close()
		return nil, nil, nil, fmt.Errorf("drill: %w", err)
	}
	rec, err := audit.New(v, db)
	if err != nil {
		v.Close()
		be.Close()
		db.Close()
		return nil, nil, nil, err
	}
	return v, db, rec, nil
}

type damage struct {
	mu    sync.Mutex
	first time.Time
	paths map[string]bool
}

// runAttack runs the attacker until it is frozen, ends or times out; it
// reports the files it damaged and whether it got through all of them.
func runAttack(ctx context.Context, o DrillOptions, data string) (*damage, bool, error) {
	args := []string{"drill-worker", "attack", "--variant", o.Variant, "--dir", data}
	if o.Rate > 0 {
		args = append(args, "--rate", fmt.Sprint(o.Rate))
	}
	actx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	cmd := drill.Command(actx, o.Exe, o.Attacker, o.Attacker, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, false, err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return nil, false, fmt.Errorf("drill: starting the attacker: %w", err)
	}
	d := &damage{paths: map[string]bool{}}
	read := make(chan struct{})
	go func() {
		defer close(read)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var l drill.ProgressLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			d.mu.Lock()
			if d.first.IsZero() {
				d.first = l.Time
			}
			d.paths[l.Path] = true
			d.mu.Unlock()
		}
		io.Copy(io.Discard, stdout)
	}()
	exited := make(chan error, 1)
	go func() { <-read; exited <- cmd.Wait() }()
	// Until the guard freezes it, it ends, or time is up.
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-exited:
			var ee *exec.ExitError
			finished := err == nil
			if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == drill.ExitLockedOut) && actx.Err() == nil {
				return d, false, fmt.Errorf("drill: the attacker failed: %v: %s", err, bytes.TrimSpace(stderr.Bytes()))
			}
			return d, finished, nil
		case <-tick.C:
			if processStopped(cmd.Process.Pid) {
				cmd.Process.Kill()
				<-exited
				return d, false, nil
			}
		}
	}
}

// processStopped reports whether pid is stopped (SIGSTOP).
func processStopped(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))
	return len(f) > 0 && f[0] == "T"
}

// hashTree is the SHA-256 of every regular file under root, by relative path.
func hashTree(root string) (map[string]string, error) {
	out := map[string]string{}
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		h := sha256.New()
		if _, err := io.Copy(h, f); err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out[rel] = hex.EncodeToString(h.Sum(nil))
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("drill: %w", err)
	}
	return out, nil
}
