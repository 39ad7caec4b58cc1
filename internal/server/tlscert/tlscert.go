// Package tlscert provides the TLS certificates of Custody's HTTPS API
// server, and the client configuration that trusts them.
//
// The server uses either the operator's certificate (Load) or a self-signed
// one that Custody generates and keeps (SelfSigned). A client reaches a
// self-signed server safely by pinning its fingerprint (ClientConfig): the
// SHA-256 of the leaf certificate, printed as lowercase hex pairs joined by
// colons, as "openssl x509 -noout -fingerprint -sha256" prints it.
package tlscert

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"
)

// Load reads a PEM certificate chain (leaf first) and its unencrypted PEM
// private key, the config's server.tls.cert and server.tls.key. It refuses
// a certificate that has expired or is not valid yet, and a key that is not
// the certificate's.
func Load(certFile, keyFile string) (tls.Certificate, error) {
	cert, err := readPair(certFile, keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	switch leaf := cert.Leaf; {
	case now.After(leaf.NotAfter):
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s expired on %s: renew it and restart the server",
			certFile, leaf.NotAfter.UTC().Format(time.DateOnly))
	case now.Before(leaf.NotBefore):
		return tls.Certificate{}, fmt.Errorf("TLS certificate %s is not valid until %s: check the system clock",
			certFile, leaf.NotBefore.UTC().Format(time.RFC3339))
	}
	return cert, nil
}

// ServerConfig returns the server's TLS configuration for cert: TLS 1.2 or
// later, and for TLS 1.2 only ECDHE key exchange with AEAD ciphers (TLS 1.3
// suites are all modern and not configurable), offering HTTP/2 and HTTP/1.1.
func ServerConfig(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"h2", "http/1.1"},
	}
}

// readPair reads and parses a certificate chain and its key, checking that
// they belong together but not when the certificate is valid.
func readPair(certFile, keyFile string) (tls.Certificate, error) {
	chain, err := readChain(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readKey(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !samePublicKey(key, chain[0].PublicKey) {
		for _, c := range chain[1:] {
			if samePublicKey(key, c.PublicKey) {
				return tls.Certificate{}, fmt.Errorf("TLS certificate %s: the certificate of key %s is not first: put the server's certificate before the CA certificates",
					certFile, keyFile)
			}
		}
		return tls.Certificate{}, fmt.Errorf("TLS key %s does not match the certificate in %s: give the key the certificate was issued for",
			keyFile, certFile)
	}
	cert := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, c := range chain {
		cert.Certificate = append(cert.Certificate, c.Raw)
	}
	return cert, nil
}

// readChain returns the certificates in a PEM file, in order.
func readChain(file string) ([]*x509.Certificate, error) {
	data, err := readFile("certificate", file)
	if err != nil {
		return nil, err
	}
	var chain []*x509.Certificate
	sawKey := false
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		switch {
		case block.Type == "CERTIFICATE":
			c, err := x509.ParseCertificate(block.Bytes)
			if err != nil {
				return nil, fmt.Errorf("TLS certificate %s: certificate %d is malformed: %w", file, len(chain)+1, err)
			}
			chain = append(chain, c)
		case strings.HasSuffix(block.Type, "PRIVATE KEY"):
			sawKey = true
		}
	}
	switch {
	case len(chain) > 0:
		return chain, nil
	case sawKey:
		return nil, fmt.Errorf("TLS certificate %s holds a private key, not a certificate: are the cert and key files swapped?", file)
	default:
		return nil, fmt.Errorf("TLS certificate %s is not PEM: it has no \"-----BEGIN CERTIFICATE-----\" block", file)
	}
}

// readKey returns the first private key in a PEM file, in PKCS #8, PKCS #1
// (RSA) or SEC 1 (EC) form.
func readKey(file string) (crypto.Signer, error) {
	data, err := readFile("key", file)
	if err != nil {
		return nil, err
	}
	sawCert := false
	for block, rest := pem.Decode(data); block != nil; block, rest = pem.Decode(rest) {
		var key any
		switch block.Type {
		case "CERTIFICATE":
			sawCert = true
			continue
		case "ENCRYPTED PRIVATE KEY":
			return nil, encryptedKeyError(file)
		case "PRIVATE KEY":
			key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
		case "RSA PRIVATE KEY":
			key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
		case "EC PRIVATE KEY":
			key, err = x509.ParseECPrivateKey(block.Bytes)
		default:
			continue // e.g. the "EC PARAMETERS" openssl writes before an EC key
		}
		if _, encrypted := block.Headers["DEK-Info"]; encrypted {
			return nil, encryptedKeyError(file)
		}
		if err != nil {
			return nil, fmt.Errorf("TLS key %s: the %s block is malformed: %w", file, block.Type, err)
		}
		switch k := key.(type) {
		case *rsa.PrivateKey, *ecdsa.PrivateKey, ed25519.PrivateKey:
			return k.(crypto.Signer), nil
		default:
			return nil, fmt.Errorf("TLS key %s: a %T cannot sign: use an RSA, ECDSA or Ed25519 key", file, key)
		}
	}
	if sawCert {
		return nil, fmt.Errorf("TLS key %s holds a certificate, not a private key: are the cert and key files swapped?", file)
	}
	return nil, fmt.Errorf("TLS key %s is not PEM: it has no \"-----BEGIN PRIVATE KEY-----\" block", file)
}

func encryptedKeyError(file string) error {
	return fmt.Errorf("TLS key %s is encrypted, and the server cannot ask for its passphrase: decrypt it (openssl pkey -in %s -out plain.key) and keep the result readable only by the server's user",
		file, file)
}

// readFile reads a certificate or key file, saying which one is missing.
func readFile(what, file string) ([]byte, error) {
	data, err := os.ReadFile(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("TLS %s %s does not exist: %w", what, file, err)
	case err != nil:
		return nil, fmt.Errorf("read TLS %s: %w", what, err)
	case len(bytes.TrimSpace(data)) == 0:
		return nil, fmt.Errorf("TLS %s %s is empty", what, file)
	}
	return data, nil
}

// samePublicKey reports whether pub is key's public half.
func samePublicKey(key crypto.Signer, pub crypto.PublicKey) bool {
	k, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(pub)
}
