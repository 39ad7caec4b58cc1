package tlscert

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// ErrFingerprintMismatch is the handshake error when the server presents a
// certificate other than the pinned one.
var ErrFingerprintMismatch = errors.New("the server's certificate fingerprint did not match")

// Fingerprint returns the SHA-256 of cert's leaf (its first DER
// certificate) as lowercase hex pairs joined by colons, or "" if cert has
// no certificate.
func Fingerprint(cert tls.Certificate) string {
	if len(cert.Certificate) == 0 {
		return ""
	}
	return formatFingerprint(sha256.Sum256(cert.Certificate[0]))
}

// ClientConfig returns the TLS configuration of a client of the API server,
// trusting, by the first of these that is given:
//   - fingerprint: exactly the server certificate whose leaf has this
//     SHA-256 fingerprint, in any case, with or without colons. The chain,
//     host name and validity dates are not checked: the pin says more than
//     they do, and lets a client reach a self-signed server safely.
//   - caFile: the CA certificates in this PEM file, instead of the system's.
//   - neither: the system's roots.
//
// Giving both is an error, as one would silently override the other.
func ClientConfig(fingerprint, caFile string) (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	switch {
	case fingerprint != "" && caFile != "":
		return nil, errors.New("give the server's certificate fingerprint or a CA file, not both")
	case fingerprint != "":
		want, err := parseFingerprint(fingerprint)
		if err != nil {
			return nil, err
		}
		// The default verification would reject a self-signed certificate;
		// VerifyConnection replaces it, and unlike VerifyPeerCertificate it
		// also runs on resumed sessions.
		cfg.InsecureSkipVerify = true
		cfg.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPin(cs, want) }
	case caFile != "":
		pem, err := readFile("CA file", caFile)
		if err != nil {
			return nil, err
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("TLS CA file %s holds no PEM certificate: give the CA certificate that signed the server's", caFile)
		}
	}
	return cfg, nil
}

// verifyPin accepts the connection only if the server's leaf certificate
// has the fingerprint want.
func verifyPin(cs tls.ConnectionState, want [sha256.Size]byte) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: the server presented no certificate", ErrFingerprintMismatch)
	}
	got := sha256.Sum256(cs.PeerCertificates[0].Raw)
	if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return fmt.Errorf("%w: expected %s, the server presented %s: if its certificate was replaced on purpose, pin the new fingerprint; if not, someone may be intercepting the connection",
			ErrFingerprintMismatch, formatFingerprint(want), formatFingerprint(got))
	}
	return nil
}

const hexDigits = "0123456789abcdef"

// formatFingerprint writes a SHA-256 as lowercase hex pairs joined by colons.
func formatFingerprint(sum [sha256.Size]byte) string {
	var b strings.Builder
	b.Grow(3*len(sum) - 1)
	for i, c := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteByte(hexDigits[c>>4])
		b.WriteByte(hexDigits[c&0xf])
	}
	return b.String()
}

// opensslPrefix starts the line "openssl x509 -noout -fingerprint -sha256"
// prints (OpenSSL 1 writes "SHA256"), so the line can be pasted whole.
const opensslPrefix = "sha256 fingerprint="

// parseFingerprint reads a SHA-256 fingerprint: 64 hex digits in any case,
// either all run together or in pairs joined by colons, optionally after
// openssl's "sha256 Fingerprint=".
func parseFingerprint(s string) ([sha256.Size]byte, error) {
	var sum [sha256.Size]byte
	text := strings.TrimSpace(s)
	if len(text) >= len(opensslPrefix) && strings.EqualFold(text[:len(opensslPrefix)], opensslPrefix) {
		text = text[len(opensslPrefix):]
	}
	digits := text
	if strings.Contains(text, ":") {
		pairs := strings.Split(text, ":")
		ok := len(pairs) == sha256.Size
		for _, p := range pairs {
			ok = ok && len(p) == 2
		}
		if !ok {
			return sum, fmt.Errorf("certificate fingerprint %q: want 32 hex pairs joined by colons, or 64 hex digits (a SHA-256)", s)
		}
		digits = strings.Join(pairs, "")
	}
	if len(digits) != hex.EncodedLen(sha256.Size) {
		return sum, fmt.Errorf("certificate fingerprint %q: want 64 hex digits (a SHA-256), with or without colons", s)
	}
	if _, err := hex.Decode(sum[:], []byte(digits)); err != nil {
		return sum, fmt.Errorf("certificate fingerprint %q: want 64 hex digits (a SHA-256), with or without colons: %w", s, err)
	}
	return sum, nil
}
