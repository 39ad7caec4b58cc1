package s3test

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/mod/modfile"
)

const (
	// toolsModule is the folder, relative to the repository root, of the
	// module that pins versitygw, so that its dependencies stay out of the
	// project's go.mod.
	toolsModule  = "tools/s3"
	versitygwPkg = "github.com/versity/versitygw/cmd/versitygw"
	mainModule   = "github.com/custodyhq/custody"
)

var binary struct {
	sync.Mutex
	path string
}

// Binary returns the path of a versitygw executable built from the version
// pinned in tools/s3/go.mod. It builds it at most once per machine, into
// os.UserCacheDir()/custody-test/versitygw-<version>-<hash of tools/s3's
// go.mod, go.sum and the Go version>, so a new pin or toolchain rebuilds it.
// Concurrent test processes wait for each other on a lock file rather than
// build twice. CUSTODY_TEST_VERSITYGW=/path/to/versitygw skips the build.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("CUSTODY_TEST_VERSITYGW"); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("CUSTODY_TEST_VERSITYGW=%s: %v", p, err)
		}
		return p
	}
	binary.Lock()
	defer binary.Unlock()
	if binary.path != "" {
		return binary.path
	}
	p, err := buildVersitygw()
	if err != nil {
		t.Fatalf("build versitygw for the S3 tests: %v\n(set CUSTODY_TEST_VERSITYGW to a prebuilt binary to skip the build)", err)
	}
	binary.path = p
	return p
}

func buildVersitygw() (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	tools := filepath.Join(root, filepath.FromSlash(toolsModule))
	version, key, err := toolsKey(tools)
	if err != nil {
		return "", err
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache folder: %w", err)
	}
	dir := filepath.Join(cache, "custody-test", "versitygw-"+version+"-"+key)
	bin := filepath.Join(dir, "versitygw")
	if isExecutable(bin) {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(dir + ".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if isExecutable(bin) { // another process built it while we waited
		return bin, nil
	}
	// Build next to the final name, then rename: a reader never sees a
	// half-written binary, even one that does not take the lock.
	tmp, err := os.CreateTemp(dir, "versitygw-*.tmp")
	if err != nil {
		return "", err
	}
	tmp.Close()
	defer os.Remove(tmp.Name())
	cmd := exec.Command("go", "build", "-C", tools, "-o", tmp.Name(),
		"-ldflags=-X main.Version="+version, versitygwPkg)
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("%s: %w\n%s", cmd, err, out)
	}
	if err := os.Rename(tmp.Name(), bin); err != nil {
		return "", err
	}
	return bin, nil
}

// repoRoot walks up from the working directory (a test's package folder)
// to the folder holding the project's go.mod.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		data, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && modfile.ModulePath(data) == mainModule {
			return dir, nil
		}
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod of module %s above the working directory", mainModule)
		}
		dir = parent
	}
}

// toolsKey returns the pinned versitygw version and a short hash of what
// determines the binary: the tools module's go.mod and go.sum and the Go
// toolchain.
func toolsKey(tools string) (version, key string, err error) {
	gomod, err := os.ReadFile(filepath.Join(tools, "go.mod"))
	if err != nil {
		return "", "", err
	}
	gosum, err := os.ReadFile(filepath.Join(tools, "go.sum"))
	if err != nil {
		return "", "", err
	}
	f, err := modfile.ParseLax("go.mod", gomod, nil)
	if err != nil {
		return "", "", err
	}
	for _, r := range f.Require {
		if r.Mod.Path == "github.com/versity/versitygw" {
			version = r.Mod.Version
		}
	}
	if version == "" {
		return "", "", fmt.Errorf("%s/go.mod does not require github.com/versity/versitygw", tools)
	}
	h := sha256.New()
	for _, b := range [][]byte{gomod, gosum, []byte(runtime.Version())} {
		h.Write(b)
		h.Write([]byte{0})
	}
	return version, hex.EncodeToString(h.Sum(nil))[:12], nil
}

func isExecutable(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular() && fi.Mode().Perm()&0o111 != 0
}
