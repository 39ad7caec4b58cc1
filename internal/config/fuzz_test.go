package config

import "testing"

// FuzzParse feeds Parse any bytes: it must never panic, and it returns
// either a Config or errors, never both or neither.
func FuzzParse(f *testing.F) {
	f.Add(Example())
	f.Add([]byte(""))
	f.Add([]byte("vault: [a\n"))
	f.Add([]byte("datasets:\n  - &a {name: x, path: /x}\n  - <<: *a\n    name: y\n"))
	f.Add([]byte("guard: {window: 1d12h, thresholds: {warning: 1, major: 2, critical: 3}}\n"))
	f.Add([]byte("alerts: {webhooks: ['https://h/x?t=1']}\nserver: {address: '[::1]:0'}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		cfg, errs := Parse("f.yaml", b)
		if (cfg == nil) == (len(errs) == 0) {
			t.Fatalf("Config %v with %d errors", cfg != nil, len(errs))
		}
		for _, e := range errs {
			_ = e.Error()
		}
	})
}
