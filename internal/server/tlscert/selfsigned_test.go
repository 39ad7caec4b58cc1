package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

func TestSelfSignedCreatesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	cert, created, err := SelfSigned(dir, []string{"custody.example", "192.0.2.7"})
	if err != nil {
		t.Fatal(err)
	}
	if !created {
		t.Error("first call: created = false")
	}
	leaf := cert.Leaf
	if k, ok := leaf.PublicKey.(*ecdsa.PublicKey); !ok || k.Curve != elliptic.P256() {
		t.Errorf("key is %T, want ECDSA P-256", leaf.PublicKey)
	}
	if life := leaf.NotAfter.Sub(time.Now()); life < 364*24*time.Hour || life > 366*24*time.Hour {
		t.Errorf("valid for %v more, want a year", life)
	}
	if !leaf.NotBefore.Before(time.Now().Add(-time.Minute)) {
		t.Errorf("NotBefore %v is not a few minutes back", leaf.NotBefore)
	}
	for _, h := range []string{"localhost", "127.0.0.1", "::1", "custody.example", "192.0.2.7"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("certificate does not cover %s: %v", h, err)
		}
	}

	again, created, err := SelfSigned(dir, []string{"CUSTODY.example.", "[192.0.2.7]"})
	if err != nil {
		t.Fatal(err)
	}
	if created || Fingerprint(again) != Fingerprint(cert) {
		t.Errorf("second call: created = %v, fingerprint %s; want the first, %s", created, Fingerprint(again), Fingerprint(cert))
	}
	if loaded, err := Load(filepath.Join(dir, certName), filepath.Join(dir, keyName)); err != nil || Fingerprint(loaded) != Fingerprint(cert) {
		t.Errorf("Load of the kept files: %v, fingerprint %s; want %s", err, Fingerprint(loaded), Fingerprint(cert))
	}
}

func TestSelfSignedKeepsKeyPrivate(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "tls")
	if _, _, err := SelfSigned(dir, nil); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]os.FileMode{".": 0o700 | os.ModeDir, keyName: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode() != want {
			t.Errorf("%s has mode %v, want %v", name, fi.Mode(), want)
		}
	}
	temps, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(temps) > 0 {
		t.Errorf("temporary files left: %v", temps)
	}
}

func TestSelfSignedRemovesOnlyStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	stale := pemFile(t, dir, ".key.pem.123.tmp", []byte("half a key"))
	old := time.Now().Add(-time.Hour)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	fresh := pemFile(t, dir, ".key.pem.456.tmp", []byte("another writer's key"))
	if _, _, err := SelfSigned(dir, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temporary file: %v, want it removed", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temporary file: %v, want it kept", err)
	}
}

func TestSelfSignedRegeneratesWhenAHostIsAdded(t *testing.T) {
	dir := t.TempDir()
	first, _, err := SelfSigned(dir, []string{"custody.example"})
	if err != nil {
		t.Fatal(err)
	}
	second, created, err := SelfSigned(dir, []string{"custody.example", "2001:db8::5"})
	if err != nil {
		t.Fatal(err)
	}
	if !created || Fingerprint(second) == Fingerprint(first) {
		t.Fatalf("created = %v, fingerprint unchanged = %v; want a new certificate", created, Fingerprint(second) == Fingerprint(first))
	}
	for _, h := range []string{"custody.example", "2001:db8::5"} {
		if err := second.Leaf.VerifyHostname(h); err != nil {
			t.Errorf("new certificate does not cover %s: %v", h, err)
		}
	}
}

func TestSelfSignedRegeneratesWhenNotValidLongEnough(t *testing.T) {
	now := time.Now()
	tests := []struct {
		name                string
		notBefore, notAfter time.Time
	}{
		{"expires in 10 days", now.Add(-time.Hour), now.Add(10 * 24 * time.Hour)},
		{"expired", now.Add(-48 * time.Hour), now.Add(-24 * time.Hour)},
		{"not valid yet", now.Add(time.Hour), now.Add(400 * 24 * time.Hour)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			old, oldKey := issue(t, tt.notBefore, tt.notAfter, false, nil, nil)
			testkit.WriteFile(t, filepath.Join(dir, certName), certPEM(old))
			testkit.WriteFile(t, filepath.Join(dir, keyName), keyPEM(t, oldKey))
			cert, created, err := SelfSigned(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !created || cert.Leaf.Equal(old) {
				t.Fatalf("created = %v; want the short-lived certificate replaced", created)
			}
			if cert.Leaf.NotAfter.Before(now.Add(300 * 24 * time.Hour)) {
				t.Errorf("new certificate expires %v, want in a year", cert.Leaf.NotAfter)
			}
		})
	}
}

func TestSelfSignedReplacesUnreadableFiles(t *testing.T) {
	_, otherKey := issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false, nil, nil)
	tests := []struct {
		name    string
		damage  func(t *testing.T, dir string)
		missing string
	}{
		{"corrupt cert", func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, certName), []byte("-----BEGIN CERTIFICATE-----\ngarbage\n"))
		}, ""},
		{"empty cert", func(t *testing.T, dir string) { testkit.WriteFile(t, filepath.Join(dir, certName), nil) }, ""},
		{"truncated key", func(t *testing.T, dir string) {
			data, _ := os.ReadFile(filepath.Join(dir, keyName))
			testkit.WriteFile(t, filepath.Join(dir, keyName), data[:len(data)/2])
		}, ""},
		{"key of another cert", func(t *testing.T, dir string) {
			testkit.WriteFile(t, filepath.Join(dir, keyName), keyPEM(t, otherKey))
		}, ""},
		{"missing cert", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, certName)) }, certName},
		{"missing key", func(t *testing.T, dir string) { os.Remove(filepath.Join(dir, keyName)) }, keyName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			first, _, err := SelfSigned(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			tt.damage(t, dir)
			cert, created, err := SelfSigned(dir, nil)
			if err != nil {
				t.Fatal(err)
			}
			if !created || Fingerprint(cert) == Fingerprint(first) {
				t.Fatalf("created = %v; want a new certificate", created)
			}
			loaded, err := Load(filepath.Join(dir, certName), filepath.Join(dir, keyName))
			if err != nil || Fingerprint(loaded) != Fingerprint(cert) {
				t.Errorf("kept files: %v, fingerprint %s; want %s", err, Fingerprint(loaded), Fingerprint(cert))
			}
		})
	}
}

func TestSelfSignedHosts(t *testing.T) {
	tests := []struct {
		hosts []string
		want  []string // SANs beyond the loopback ones
		err   string
	}{
		{hosts: []string{"", "0.0.0.0", "::", "[::]"}},
		{hosts: []string{"127.0.0.1", "LOCALHOST", "::1"}},
		{hosts: []string{"[2001:db8::1]", "fe80::1%eth0", "::ffff:192.0.2.1"}, want: []string{"2001:db8::1", "fe80::1", "192.0.2.1"}},
		{hosts: []string{"Custody.Example.", "*.svc.example"}, want: []string{"custody.example", "*.svc.example"}},
		{hosts: []string{"custody.example:8443"}, err: "without the port"},
		{hosts: []string{"two words"}, err: "neither an IP address nor a DNS name"},
		{hosts: []string{"a..b"}, err: "neither"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.hosts, ","), func(t *testing.T) {
			cert, _, err := SelfSigned(t.TempDir(), tt.hosts)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var sans []string
			sans = append(sans, cert.Leaf.DNSNames...)
			for _, ip := range cert.Leaf.IPAddresses {
				sans = append(sans, ip.String())
			}
			want := append([]string{"localhost"}, tt.want...)
			want = append(want, "127.0.0.1", "::1")
			slices.Sort(sans)
			slices.Sort(want)
			if !slices.Equal(sans, want) {
				t.Errorf("SANs %v, want %v", sans, want)
			}
		})
	}
}

// TestSelfSignedConcurrentProcessesAgree starts several processes on one
// empty folder at once: one must generate, and all must get its certificate.
func TestSelfSignedConcurrentProcessesAgree(t *testing.T) {
	if dir := os.Getenv("TLSCERT_TEST_DIR"); dir != "" {
		cert, created, err := SelfSigned(dir, []string{"custody.example"})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		fmt.Println(Fingerprint(cert), created)
		os.Exit(0)
	}
	if runtime.GOOS != "linux" && runtime.GOOS != "darwin" && runtime.GOOS != "windows" {
		t.Skip("no file locks")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	dir := filepath.Join(t.TempDir(), "tls")
	const n = 6
	outputs := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			cmd := exec.Command(exe, "-test.run=^TestSelfSignedConcurrentProcessesAgree$")
			cmd.Env = append(os.Environ(), "TLSCERT_TEST_DIR="+dir)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("process %d: %v: %s", i, err, out)
			}
			outputs[i] = strings.TrimSpace(string(out))
		})
	}
	wg.Wait()
	fingerprints := map[string]bool{}
	created := 0
	for _, out := range outputs {
		fp, made, _ := strings.Cut(out, " ")
		fingerprints[fp] = true
		if made == "true" {
			created++
		}
	}
	if len(fingerprints) != 1 || created != 1 {
		t.Errorf("processes printed %q; want one fingerprint, created once", outputs)
	}
	cert, created2, err := SelfSigned(dir, []string{"custody.example"})
	if err != nil || created2 || !fingerprints[Fingerprint(cert)] {
		t.Errorf("after them: created = %v, err %v, fingerprint %s; want theirs", created2, err, Fingerprint(cert))
	}
}
