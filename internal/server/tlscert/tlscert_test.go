package tlscert

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/testkit"
)

// issue makes a key and a certificate valid from notBefore to notAfter for
// 127.0.0.1 and localhost, signed by parent (self-signed if parent is nil).
func issue(t *testing.T, notBefore, notAfter time.Time, isCA bool, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(time.Now().UnixNano()),
		Subject:               pkix.Name{CommonName: "test"},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  isCA,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	if isCA {
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, key
}

func certPEM(certs ...*x509.Certificate) []byte {
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	return b
}

func keyPEM(t *testing.T, key *ecdsa.PrivateKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
}

// pemFile writes data to name in dir and returns its path, for the tables
// and calls that take file names.
func pemFile(t *testing.T, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	testkit.WriteFile(t, p, data)
	return p
}

// handshake runs a TLS handshake between server and client over a
// 127.0.0.1 connection, returning what the client saw.
func handshake(t *testing.T, server, client *tls.Config) (tls.ConnectionState, error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan struct{})
	go func() {
		defer close(done)
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		tls.Server(conn, server).Handshake()
	}()
	defer func() { <-done }()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", ln.Addr().String(), client)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer conn.Close()
	return conn.ConnectionState(), nil
}

// get fetches / from a test HTTPS server serving cert, as a client
// configured by cfg.
func get(t *testing.T, cert tls.Certificate, cfg *tls.Config) (*http.Response, error) {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "ok")
	}))
	srv.TLS = ServerConfig(cert)
	srv.StartTLS()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 10 * time.Second}
	defer client.CloseIdleConnections()
	resp, err := client.Get(srv.URL)
	if err == nil {
		resp.Body.Close()
	}
	return resp, err
}

func TestLoadReadsChainLeafFirst(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), true, nil, nil)
	leaf, leafKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), false, ca, caKey)
	certFile := pemFile(t, dir, "chain.pem", certPEM(leaf, ca))
	keyFile := pemFile(t, dir, "key.pem", keyPEM(t, leafKey))

	cert, err := Load(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if len(cert.Certificate) != 2 || !cert.Leaf.Equal(leaf) {
		t.Errorf("Load: %d certificates, leaf %v; want the leaf then the CA", len(cert.Certificate), cert.Leaf.Subject)
	}
}

func TestLoadErrorsNameTheFileAndTheProblem(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	good, goodKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), false, nil, nil)
	_, otherKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), false, nil, nil)
	expired, expiredKey := issue(t, now.Add(-2*time.Hour), now.Add(-time.Hour), false, nil, nil)
	future, futureKey := issue(t, now.Add(time.Hour), now.Add(2*time.Hour), false, nil, nil)
	ca, caKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), true, nil, nil)
	leaf, leafKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), false, ca, caKey)

	file := func(name string, data []byte) string { return pemFile(t, dir, name, data) }
	goodCert, goodKeyFile := file("good.pem", certPEM(good)), file("good.key", keyPEM(t, goodKey))
	encrypted := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-256-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte("not really a key")})

	tests := []struct {
		name              string
		certFile, keyFile string
		want              []string
	}{
		{"missing cert", filepath.Join(dir, "nope.pem"), goodKeyFile, []string{"nope.pem", "does not exist"}},
		{"missing key", goodCert, filepath.Join(dir, "nope.key"), []string{"nope.key", "does not exist"}},
		{"cert not PEM", file("der.pem", good.Raw), goodKeyFile, []string{"der.pem", "not PEM"}},
		{"cert empty", file("empty.pem", nil), goodKeyFile, []string{"empty.pem", "empty"}},
		{"key not PEM", goodCert, file("text.key", []byte("hello\n")), []string{"text.key", "not PEM"}},
		{"swapped", goodKeyFile, goodCert, []string{"good.key", "swapped"}},
		{"key of another cert", goodCert, file("other.key", keyPEM(t, otherKey)), []string{"other.key", "does not match", "good.pem"}},
		{"leaf not first", file("backwards.pem", certPEM(ca, leaf)), file("leaf.key", keyPEM(t, leafKey)), []string{"backwards.pem", "not first"}},
		{"encrypted key", goodCert, file("enc.key", encrypted), []string{"enc.key", "encrypted"}},
		{"malformed cert", file("bad.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("junk")})), goodKeyFile, []string{"bad.pem", "malformed"}},
		{"expired", file("expired.pem", certPEM(expired)), file("expired.key", keyPEM(t, expiredKey)), []string{"expired.pem", "expired on"}},
		{"not yet valid", file("future.pem", certPEM(future)), file("future.key", keyPEM(t, futureKey)), []string{"future.pem", "not valid until"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(tt.certFile, tt.keyFile)
			if err == nil {
				t.Fatal("Load succeeded")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
	if _, err := Load(filepath.Join(dir, "nope.pem"), goodKeyFile); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: error %v is not fs.ErrNotExist", err)
	}
}

func TestFingerprintIsSHA256OfLeafInLowercaseHexPairs(t *testing.T) {
	c, key := issue(t, time.Now().Add(-time.Hour), time.Now().Add(time.Hour), false, nil, nil)
	got := Fingerprint(tls.Certificate{Certificate: [][]byte{c.Raw}, PrivateKey: key})
	sum := sha256.Sum256(c.Raw)
	var pairs []string
	for _, b := range sum {
		pairs = append(pairs, fmt.Sprintf("%02x", b))
	}
	if want := strings.Join(pairs, ":"); got != want {
		t.Errorf("Fingerprint = %s, want %s", got, want)
	}
	if got := Fingerprint(tls.Certificate{}); got != "" {
		t.Errorf("Fingerprint of no certificate = %q, want empty", got)
	}
}

func TestParseFingerprintAcceptsAnyCaseWithOrWithoutColons(t *testing.T) {
	sum := sha256.Sum256([]byte("custody"))
	colons := formatFingerprint(sum)
	bare := strings.ReplaceAll(colons, ":", "")
	for _, s := range []string{
		colons,
		strings.ToUpper(colons),
		bare,
		strings.ToUpper(bare),
		"  " + colons + "\n",
		"SHA256 Fingerprint=" + strings.ToUpper(colons),
		"sha256 Fingerprint=" + strings.ToUpper(colons),
	} {
		got, err := parseFingerprint(s)
		if err != nil || got != sum {
			t.Errorf("parseFingerprint(%q) = %x, %v; want %x", s, got, err, sum)
		}
	}
	for _, s := range []string{
		"",
		bare[:62],
		bare + "00",
		colons[:len(colons)-3],
		bare[:63] + "g",
		colons[:5] + colons[6:],       // a missing colon
		colons[:2] + ":" + colons[2:], // a doubled colon
		"sha1 Fingerprint=" + colons,
		strings.Repeat("zz", 32),
	} {
		if _, err := parseFingerprint(s); err == nil {
			t.Errorf("parseFingerprint(%q) succeeded", s)
		}
	}
}

func FuzzParseFingerprint(f *testing.F) {
	sum := sha256.Sum256([]byte("custody"))
	f.Add(formatFingerprint(sum))
	f.Add(strings.ToUpper(strings.ReplaceAll(formatFingerprint(sum), ":", "")))
	f.Add("SHA256 Fingerprint=" + formatFingerprint(sum))
	f.Add("ab:cd")
	f.Add("::::")
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseFingerprint(s)
		if err != nil {
			return
		}
		text := formatFingerprint(got)
		if again, err := parseFingerprint(text); err != nil || again != got {
			t.Fatalf("%q parsed to %x, whose form %q parses to %x, %v", s, got, text, again, err)
		}
		digits := strings.ReplaceAll(strings.ToLower(strings.TrimSpace(s)), ":", "")
		if !strings.HasSuffix(digits, strings.ReplaceAll(text, ":", "")) {
			t.Fatalf("%q parsed to %s, digits it does not hold", s, text)
		}
	})
}

func TestClientConfigWithFingerprintConnects(t *testing.T) {
	cert, _, err := SelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	fp := Fingerprint(cert)
	for _, pin := range []string{fp, strings.ToUpper(fp), strings.ReplaceAll(fp, ":", "")} {
		cfg, err := ClientConfig(pin, "")
		if err != nil {
			t.Fatalf("ClientConfig(%q): %v", pin, err)
		}
		resp, err := get(t, cert, cfg)
		if err != nil {
			t.Fatalf("pin %q: %v", pin, err)
		}
		if resp.StatusCode != http.StatusOK {
			t.Errorf("pin %q: status %s", pin, resp.Status)
		}
	}
}

func TestClientConfigWithWrongFingerprintFails(t *testing.T) {
	cert, _, err := SelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	wrong := formatFingerprint(sha256.Sum256([]byte("another certificate")))
	cfg, err := ClientConfig(wrong, "")
	if err != nil {
		t.Fatal(err)
	}
	_, err = handshake(t, ServerConfig(cert), cfg)
	if !errors.Is(err, ErrFingerprintMismatch) {
		t.Fatalf("handshake error %v, want ErrFingerprintMismatch", err)
	}
	for _, w := range []string{"did not match", wrong, Fingerprint(cert)} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if _, err := get(t, cert, cfg); !errors.Is(err, ErrFingerprintMismatch) {
		t.Errorf("HTTPS request error %v, want ErrFingerprintMismatch", err)
	}
}

func TestClientConfigWithCAFileTrustsThatCA(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	ca, caKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), true, nil, nil)
	leaf, leafKey := issue(t, now.Add(-time.Hour), now.Add(time.Hour), false, ca, caKey)
	otherCA, _ := issue(t, now.Add(-time.Hour), now.Add(time.Hour), true, nil, nil)
	cert, err := Load(pemFile(t, dir, "chain.pem", certPEM(leaf, ca)),
		pemFile(t, dir, "key.pem", keyPEM(t, leafKey)))
	if err != nil {
		t.Fatal(err)
	}

	cfg, err := ClientConfig("", pemFile(t, dir, "ca.pem", certPEM(ca)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, cert, cfg); err != nil {
		t.Errorf("trusting the issuing CA: %v", err)
	}

	cfg, err = ClientConfig("", pemFile(t, dir, "other.pem", certPEM(otherCA)))
	if err != nil {
		t.Fatal(err)
	}
	var unknown x509.UnknownAuthorityError
	if _, err := get(t, cert, cfg); !errors.As(err, &unknown) {
		t.Errorf("trusting another CA: error %v, want x509.UnknownAuthorityError", err)
	}
}

func TestClientConfigWithSelfSignedCertAsCAFile(t *testing.T) {
	dir := t.TempDir()
	cert, _, err := SelfSigned(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ClientConfig("", filepath.Join(dir, certName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := get(t, cert, cfg); err != nil {
		t.Errorf("trusting the self-signed certificate itself: %v", err)
	}
}

func TestClientConfigRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	fp := formatFingerprint(sha256.Sum256(nil))
	tests := []struct {
		name, fingerprint, caFile, want string
	}{
		{"both", fp, pemFile(t, dir, "ca.pem", []byte("x")), "not both"},
		{"short fingerprint", "ab:cd", "", "64 hex digits"},
		{"missing CA file", "", filepath.Join(dir, "nope.pem"), "does not exist"},
		{"CA file without certificates", "", pemFile(t, dir, "junk.pem", []byte("junk")), "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ClientConfig(tt.fingerprint, tt.caFile)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ClientConfig error %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestClientConfigWithNeitherUsesSystemRoots(t *testing.T) {
	cfg, err := ClientConfig("", "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RootCAs != nil || cfg.InsecureSkipVerify || cfg.VerifyConnection != nil || cfg.MinVersion != tls.VersionTLS12 {
		t.Errorf("ClientConfig(\"\", \"\") = %+v, want system roots, full verification, TLS 1.2+", cfg)
	}
}

func TestServerConfigRefusesOldVersionsAndWeakCiphers(t *testing.T) {
	cert, _, err := SelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pinned, err := ClientConfig(Fingerprint(cert), "")
	if err != nil {
		t.Fatal(err)
	}
	client := func(edit func(*tls.Config)) *tls.Config {
		c := pinned.Clone()
		edit(c)
		return c
	}
	tests := []struct {
		name   string
		client *tls.Config
		ok     bool
	}{
		{"TLS 1.3", client(func(c *tls.Config) {}), true},
		{"TLS 1.2 AEAD", client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
		}), true},
		{"TLS 1.1", client(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS10, tls.VersionTLS11 }), false},
		{"TLS 1.2 CBC", client(func(c *tls.Config) {
			c.MaxVersion = tls.VersionTLS12
			c.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256}
		}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := handshake(t, ServerConfig(cert), tt.client)
			if (err == nil) != tt.ok {
				t.Errorf("handshake error %v, want success %v", err, tt.ok)
			}
		})
	}
}

func TestServerConfigOffersHTTP2(t *testing.T) {
	cert, _, err := SelfSigned(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := ClientConfig(Fingerprint(cert), "")
	if err != nil {
		t.Fatal(err)
	}
	for _, proto := range []string{"h2", "http/1.1"} {
		c := cfg.Clone()
		c.NextProtos = []string{proto}
		state, err := handshake(t, ServerConfig(cert), c)
		if err != nil {
			t.Fatal(err)
		}
		if state.NegotiatedProtocol != proto {
			t.Errorf("offered %s, negotiated %q", proto, state.NegotiatedProtocol)
		}
	}
}
