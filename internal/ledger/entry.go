package ledger

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"
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
//
// Those bytes are, and must stay, exactly what encoding/json gives for e
// (with SetEscapeHTML(false) and no trailing newline): records already in
// logs were written that way, and a hash only verifies if the bytes match.
// Leaf writes them by hand because the reflective encoder was a tenth of
// the file watcher's CPU; leaf_test.go holds it to encoding/json.
func (e *Entry) Leaf() ([]byte, error) {
	b, err := e.appendLeaf(make([]byte, 0, e.leafSizeHint()))
	if err != nil {
		return nil, err
	}
	return b, nil
}

// leafSizeHint is the length of e's record if no byte needs escaping and
// every optional field is present, so that Leaf allocates once.
func (e *Entry) leafSizeHint() int {
	const fixed = len(`{"time":"2006-01-02T15:04:05.999999999Z","kind":"","actor":{"uid":4294967295,` +
		`"user":"","pid":-9223372036854775808,"exe":"","token":""},"dataset":"","version":"","path":"",` +
		`"outcome":"","detail":{}}`)
	n := fixed + len(e.Kind) + len(e.Actor.User) + len(e.Actor.Exe) + len(e.Actor.Token) +
		len(e.Dataset) + len(e.Version) + len(e.Path) + len(e.Outcome)
	for k, v := range e.Detail {
		n += len(`"":"",`) + len(k) + len(v)
	}
	return n
}

// appendLeaf appends e's record (see Leaf) to dst. On error it returns dst
// unchanged.
func (e *Entry) appendLeaf(dst []byte) ([]byte, error) {
	n0 := len(dst)
	dst = append(dst, `{"time":"`...)
	ts := len(dst)
	dst = e.Time.UTC().AppendFormat(dst, time.RFC3339Nano)
	// RFC 3339 has four-digit years only; time.Time.MarshalJSON refuses
	// the others with this same test, and encoding/json wraps its error.
	if dst[ts+len("9999")] != '-' {
		_, err := json.Marshal(e.Time.UTC())
		return dst[:n0], fmt.Errorf("encode ledger entry: %w", err)
	}
	dst = append(dst, `","kind":`...)
	dst = appendJSONString(dst, e.Kind)
	dst = append(dst, `,"actor":`...)
	dst = e.Actor.appendJSON(dst)
	dst = appendOptionalField(dst, `,"dataset":`, e.Dataset)
	dst = appendOptionalField(dst, `,"version":`, e.Version)
	dst = appendOptionalField(dst, `,"path":`, e.Path)
	dst = append(dst, `,"outcome":`...)
	dst = appendJSONString(dst, e.Outcome)
	if len(e.Detail) > 0 {
		dst = append(dst, `,"detail":`...)
		dst = appendSortedMap(dst, e.Detail)
	}
	return append(dst, '}'), nil
}

// appendJSON appends a as a JSON object, leaving out the omitempty fields
// that are empty: a nil UID, a zero PID, an empty string.
func (a *Actor) appendJSON(dst []byte) []byte {
	// Every field is written after a comma; the first comma then becomes
	// the opening brace.
	open := len(dst)
	if a.UID != nil {
		dst = append(dst, `,"uid":`...)
		dst = strconv.AppendUint(dst, uint64(*a.UID), 10)
	}
	dst = appendOptionalField(dst, `,"user":`, a.User)
	if a.PID != 0 {
		dst = append(dst, `,"pid":`...)
		dst = strconv.AppendInt(dst, int64(a.PID), 10)
	}
	dst = appendOptionalField(dst, `,"exe":`, a.Exe)
	dst = appendOptionalField(dst, `,"token":`, a.Token)
	if len(dst) == open {
		return append(dst, "{}"...)
	}
	dst[open] = '{'
	return append(dst, '}')
}

// appendOptionalField appends prefix and v as a JSON string, unless v is
// empty (omitempty).
func appendOptionalField(dst []byte, prefix, v string) []byte {
	if v == "" {
		return dst
	}
	return appendJSONString(append(dst, prefix...), v)
}

// appendSortedMap appends m as a JSON object with its keys in byte order,
// as encoding/json sorts them: on the raw keys, before escaping.
func appendSortedMap(dst []byte, m map[string]string) []byte {
	var small [8]string // detail maps are small; sort them without allocating
	keys := small[:0]
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	dst = append(dst, '{')
	for i, k := range keys {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendJSONString(dst, k)
		dst = append(dst, ':')
		dst = appendJSONString(dst, m[k])
	}
	return append(dst, '}')
}

// plainJSONByte is true for the ASCII bytes a JSON string holds as they
// are: not '"', not '\\', not below 0x20.
var plainJSONByte = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

// appendJSONString appends s quoted as encoding/json's appendString does
// with HTML escaping off (Go 1.26, encode.go): '"' and '\\' and the control
// bytes below 0x20 escaped, with the short forms \b \f \n \r \t where JSON
// has them; each byte of invalid UTF-8 as \ufffd; U+2028 and U+2029
// escaped for JSONP's sake; everything else, DEL and '<' '>' '&' included,
// as it is.
func appendJSONString(dst []byte, s string) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	start := 0 // s[start:i] is pending, to be copied as it is
	for i := 0; i < len(s); {
		c := s[i]
		if plainJSONByte[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
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
