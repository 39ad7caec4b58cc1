package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"
)

// Entry is one audited action: what, who, when, on what, with which
// outcome. Its canonical JSON (Leaf) is the record hashed into the log.
type Entry struct {
	Time    time.Time         `json:"time"`
	Kind    string            `json:"kind"` // "snapshot", "restore", "forget", "key.add", "file.modify", ...
	Actor   Actor             `json:"actor"`
	Dataset string            `json:"dataset,omitempty"`
	Version string            `json:"version,omitempty"`
	Path    string            `json:"path,omitempty"`
	Outcome string            `json:"outcome"` // "ok", "denied", "failed: ..."
	Detail  map[string]string `json:"detail,omitempty"`
}

// Actor is who acted: an OS user and process, or an API principal.
type Actor struct {
	UID   *uint32 `json:"uid,omitempty"`
	User  string  `json:"user,omitempty"`
	PID   int     `json:"pid,omitempty"`
	Exe   string  `json:"exe,omitempty"`
	Token string  `json:"token,omitempty"` // an API token's name, never its secret
}

// Leaf is the canonical encoding of e: JSON with fields in declaration
// order, map keys sorted, no HTML escaping, no insignificant space, times
// in UTC with nanoseconds. The same entry always gives the same bytes.
func (e *Entry) Leaf() ([]byte, error) {
	c := *e
	c.Time = c.Time.UTC()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(&c); err != nil {
		return nil, fmt.Errorf("encode ledger entry: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// ParseLeaf decodes a record; it never trusts its input.
func ParseLeaf(b []byte) (*Entry, error) {
	var e Entry
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("ledger entry: %w", err)
	}
	if dec.More() {
		return nil, fmt.Errorf("ledger entry: trailing data")
	}
	return &e, nil
}
