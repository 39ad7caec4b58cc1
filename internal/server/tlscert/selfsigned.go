package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"
)

// The files SelfSigned keeps in its folder. The lock file is never removed:
// removing it would let two processes each lock a different file.
const (
	certName = "cert.pem"
	keyName  = "key.pem"
	lockName = "lock"
)

const (
	// validity is how long a generated certificate lasts.
	validity = 365 * 24 * time.Hour
	// renewBefore is how long before its expiry a certificate is replaced,
	// so a server that runs for weeks does not outlive it.
	renewBefore = 30 * 24 * time.Hour
	// backdate starts a certificate's validity this much before its
	// creation, for clients whose clocks run behind.
	backdate = 5 * time.Minute
)

// loopbackHosts are in every generated certificate, so a client on the
// server's machine can use any loopback name.
var loopbackHosts = []string{"localhost", "127.0.0.1", "::1"}

// SelfSigned returns the self-signed certificate kept in dir (cert.pem and
// key.pem), generating it if it is missing or unreadable, expires within 30
// days, or does not cover every one of hosts; created reports whether it was
// generated now, and so whether its fingerprint is new.
//
// Hosts are IP addresses or DNS names, typically the host part of the
// server's listen address; empty and unspecified ones (0.0.0.0, ::) are
// skipped, as no client dials them. A generated certificate is ECDSA P-256,
// valid for a year, for localhost, 127.0.0.1, ::1 and hosts.
//
// dir is created readable only by its owner, and the key likewise. Each file
// is replaced atomically, and processes sharing dir take turns (a lock file),
// so a crash or a second server never leaves a half-written key; a crash
// between the two files leaves a key that does not match the certificate,
// which the next call replaces.
func SelfSigned(dir string, hosts []string) (cert tls.Certificate, created bool, err error) {
	if dir == "" {
		return tls.Certificate{}, false, errors.New("self-signed TLS certificate: no folder given to keep it in")
	}
	names, err := certHosts(hosts)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("create the TLS certificate folder: %w", err)
	}
	unlock, err := lockFile(filepath.Join(dir, lockName))
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("lock the TLS certificate folder %s: %w", dir, err)
	}
	defer unlock()

	certFile, keyFile := filepath.Join(dir, certName), filepath.Join(dir, keyName)
	now := time.Now()
	if cert, err := readPair(certFile, keyFile); err == nil && reusable(cert.Leaf, names, now) {
		return cert, false, nil
	}
	cert, certPEM, keyPEM, err := generate(names, now)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("generate a self-signed TLS certificate: %w", err)
	}
	removeTemps(dir, now)
	if err := writeAtomic(dir, keyName, keyPEM, 0o600); err != nil {
		return tls.Certificate{}, false, err
	}
	if err := writeAtomic(dir, certName, certPEM, 0o644); err != nil {
		return tls.Certificate{}, false, err
	}
	if err := syncDir(dir); err != nil {
		return tls.Certificate{}, false, err
	}
	return cert, true, nil
}

// reusable reports whether leaf is valid now, for at least renewBefore more,
// and for each of hosts.
func reusable(leaf *x509.Certificate, hosts []string, now time.Time) bool {
	if now.Before(leaf.NotBefore) || now.Add(renewBefore).After(leaf.NotAfter) {
		return false
	}
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

// certHosts returns the loopback names followed by hosts in canonical form
// (IPs as netip prints them, DNS names in lower case without a final dot),
// without repeats.
func certHosts(hosts []string) ([]string, error) {
	names := slices.Clone(loopbackHosts)
	for _, h := range hosts {
		name, err := canonicalHost(h)
		if err != nil {
			return nil, err
		}
		if name != "" && !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// canonicalHost returns h as it goes into a certificate, or "" if no client
// dials it.
func canonicalHost(h string) (string, error) {
	s := strings.TrimSpace(h)
	if len(s) >= 2 && s[0] == '[' && s[len(s)-1] == ']' {
		s = s[1 : len(s)-1]
	}
	if s == "" {
		return "", nil
	}
	if addr, err := netip.ParseAddr(s); err == nil {
		if addr.IsUnspecified() {
			return "", nil
		}
		return addr.WithZone("").Unmap().String(), nil
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	if !validDNSName(name) {
		return "", fmt.Errorf("self-signed TLS certificate: host %q is neither an IP address nor a DNS name: give the host part of the listen address, without the port", h)
	}
	return name, nil
}

// validDNSName reports whether name is dot-separated labels of letters,
// digits, '-' and '_', optionally with a wildcard "*" as the first label.
func validDNSName(name string) bool {
	labels := strings.Split(strings.TrimPrefix(name, "*."), ".")
	if len(name) > 253 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// generate makes a new key and a certificate for hosts, returning them
// ready to serve and as PEM.
func generate(hosts []string, now time.Time) (cert tls.Certificate, certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"Custody"}, CommonName: "Custody API server (self-signed)"},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return tls.Certificate{}, nil, nil, err
	}
	cert = tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}
	certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})
	return cert, certPEM, keyPEM, nil
}

// tempPattern names the temporary files writeAtomic creates: hidden, and
// unique so that no two writers share one.
func tempPattern(name string) string { return "." + name + ".*.tmp" }

// writeAtomic replaces dir/name with data: written to a temporary file,
// synced, then renamed over it, so a crash leaves the old file or the new,
// never part of one.
func writeAtomic(dir, name string, data []byte, perm os.FileMode) (err error) {
	f, err := os.CreateTemp(dir, tempPattern(name))
	if err != nil {
		return fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
			err = fmt.Errorf("write %s: %w", filepath.Join(dir, name), err)
		}
	}()
	if err := f.Chmod(perm); err != nil && runtime.GOOS != "windows" {
		return err
	}
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// staleTemp is the age past which a temporary file is taken for one a crash
// left behind: a write takes milliseconds. Where there are no file locks,
// a younger one may be another process's write in progress.
const staleTemp = time.Minute

// removeTemps deletes the temporary files of writes that never finished.
func removeTemps(dir string, now time.Time) {
	for _, name := range []string{certName, keyName} {
		temps, _ := filepath.Glob(filepath.Join(dir, tempPattern(name)))
		for _, t := range temps {
			if fi, err := os.Lstat(t); err == nil && now.Sub(fi.ModTime()) > staleTemp {
				os.Remove(t)
			}
		}
	}
}

// syncDir fsyncs dir so that the renames in it survive a crash.
func syncDir(dir string) error {
	if runtime.GOOS == "windows" {
		return nil // directories cannot be fsynced there; NTFS journals metadata itself
	}
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		if cerr := d.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		return fmt.Errorf("sync the TLS certificate folder: %w", err)
	}
	return nil
}
