package server

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// FuzzDecodeRequests feeds arbitrary bodies to the decoder of every
// request type: it must answer a clear 400/413 or decode, never panic or
// accept trailing data.
func FuzzDecodeRequests(f *testing.F) {
	for _, s := range []string{`{"version":"abcdef12","path":"a/b"}`, `{"restore":true}`, `{"checkpoint":"x\n1\n"}`,
		`{"name":"n","role":"auditor","stages":["train"],"expires":"90d","uid":1000}`, `{}`, `[]`, `null`, `{"a":1}{}`, "\xff"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, v := range []any{&restoreRequest{}, &recoverRequest{}, &consistencyRequest{}, &tokenRequest{}} {
			r := http.MaxBytesReader(httptest.NewRecorder(), io.NopCloser(bytes.NewReader(body)), 1024)
			err := decodeJSON(r, v)
			if err == nil {
				continue
			}
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest && ae.status != http.StatusRequestEntityTooLarge {
				t.Fatalf("decode %q: %v, want a 400 or 413", body, err)
			}
			if ae.status == http.StatusRequestEntityTooLarge && len(body) <= 1024 {
				t.Fatalf("a %d-byte body was called too large", len(body))
			}
		}
		if p, err := restorePath(string(body)); err == nil && (bytes.Contains([]byte(p), []byte("..")) && (p == ".." || bytes.HasPrefix([]byte(p), []byte("../")))) {
			t.Fatalf("restorePath(%q) = %q escapes", body, p)
		}
	})
}
