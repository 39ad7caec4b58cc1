package ledger

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// referenceLeaf is Leaf as it was first written, with encoding/json. The
// hand-written encoder must give the same bytes for every entry, since a
// record's bytes are what the log hashes.
func referenceLeaf(e *Entry) ([]byte, error) {
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

// checkLeafMatchesReference fails t unless Leaf and referenceLeaf agree on
// e: the same bytes, or the same error.
func checkLeafMatchesReference(t *testing.T, e *Entry) {
	t.Helper()
	want, wantErr := referenceLeaf(e)
	got, err := e.Leaf()
	if (err == nil) != (wantErr == nil) {
		t.Fatalf("Leaf error = %v, encoding/json error = %v", err, wantErr)
	}
	if err != nil {
		if err.Error() != wantErr.Error() {
			t.Fatalf("Leaf error = %q, encoding/json error = %q", err, wantErr)
		}
		if got != nil {
			t.Fatalf("Leaf returned %q with error %v", got, err)
		}
		return
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Leaf differs from encoding/json:\n got %q\nwant %q", got, want)
	}
}

// allBytesBelow0x20 is every control byte, plus DEL, in one string.
func allBytesBelow0x20() string {
	var b strings.Builder
	for c := range 0x20 {
		b.WriteByte(byte(c))
	}
	b.WriteByte(0x7f)
	return b.String()
}

func TestLeafMatchesEncodingJSON(t *testing.T) {
	zero, uid, pid := uint32(0), uint32(4294967295), 4242
	ts := time.Date(2026, 11, 22, 7, 15, 11, 123456789, time.UTC)
	paris := time.FixedZone("CET", 3600)
	behind := time.FixedZone("", -(9*3600 + 30*60 + 17))
	full := Entry{
		Time:    ts,
		Kind:    "file.create",
		Actor:   Actor{UID: &uid, User: "ana", PID: pid, Exe: "/usr/bin/cp", Token: "ci"},
		Dataset: "raw",
		Version: "v1",
		Path:    "/srv/data/raw/2026/11/22/instrument-07/run-0042/frame-000123.tif",
		Outcome: "ok",
		Detail:  map[string]string{"size": "123", "mode": "0644"},
	}
	withEntry := func(f func(e *Entry)) Entry {
		e := full
		e.Detail = map[string]string{"size": "123", "mode": "0644"}
		f(&e)
		return e
	}
	tests := []struct {
		name string
		e    Entry
	}{
		{"zero entry", Entry{}},
		{"every field", full},
		{"nil uid", withEntry(func(e *Entry) { e.Actor.UID = nil })},
		{"zero uid", withEntry(func(e *Entry) { e.Actor.UID = &zero })},
		{"zero pid", withEntry(func(e *Entry) { e.Actor.PID = 0 })},
		{"negative pid", withEntry(func(e *Entry) { e.Actor.PID = -1 })},
		{"min pid", withEntry(func(e *Entry) { e.Actor.PID = -1 << 63 })},
		{"empty actor", withEntry(func(e *Entry) { e.Actor = Actor{} })},
		{"only outcome", Entry{Time: ts, Outcome: "ok"}},
		{"nil detail", withEntry(func(e *Entry) { e.Detail = nil })},
		{"empty detail", withEntry(func(e *Entry) { e.Detail = map[string]string{} })},
		{"detail keys need sorting", withEntry(func(e *Entry) {
			e.Detail = map[string]string{"z": "1", "a": "2", "B": "3", "": "4", "é": "5", "aa": "6", "a\x00": "7"}
		})},
		{"detail keys and values escaped", withEntry(func(e *Entry) {
			e.Detail = map[string]string{"\"q\"": "<&>", "\u2028": "\xff", "\n": ""}
		})},
		{"control bytes", withEntry(func(e *Entry) {
			e.Kind = allBytesBelow0x20()
			e.Detail = map[string]string{allBytesBelow0x20(): allBytesBelow0x20()}
		})},
		{"quote and backslash", withEntry(func(e *Entry) { e.Path = `C:\dir\"name"\` })},
		{"invalid utf-8", withEntry(func(e *Entry) {
			e.Path = "a\xffb\xc3(\xe2\x82\xf0\x9f\x98\xed\xa0\x80z\x80"
			e.Actor.User = "\xc3"
		})},
		{"line and paragraph separators", withEntry(func(e *Entry) {
			e.Path = "a\u2028b\u2029c\u2027\u202a"
		})},
		{"html characters", withEntry(func(e *Entry) { e.Outcome = "failed: <script>&amp;</script>" })},
		{"multibyte", withEntry(func(e *Entry) { e.Actor.User = "José 日本 🙂 \ufffd \u00a0" })},
		{"non-utc time with nanoseconds", withEntry(func(e *Entry) { e.Time = ts.In(paris) })},
		{"non-utc time without nanoseconds", withEntry(func(e *Entry) {
			e.Time = time.Date(2026, 1, 1, 0, 30, 0, 0, behind)
		})},
		{"local time with monotonic reading", withEntry(func(e *Entry) { e.Time = time.Now() })},
		{"trailing zero nanoseconds", withEntry(func(e *Entry) { e.Time = ts.Truncate(time.Millisecond).Add(10 * time.Microsecond) })},
		{"time zero value", withEntry(func(e *Entry) { e.Time = time.Time{} })},
		{"year 0", withEntry(func(e *Entry) { e.Time = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"year 9999", withEntry(func(e *Entry) { e.Time = time.Date(9999, 12, 31, 23, 59, 59, 999999999, time.UTC) })},
		{"year 9999 in utc only", withEntry(func(e *Entry) {
			e.Time = time.Date(10000, 1, 1, 0, 30, 0, 0, paris)
		})},
		{"year 10000", withEntry(func(e *Entry) { e.Time = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"year -1", withEntry(func(e *Entry) { e.Time = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) })},
		{"year 10000 in utc only", withEntry(func(e *Entry) {
			e.Time = time.Date(9999, 12, 31, 23, 30, 0, 0, behind)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkLeafMatchesReference(t, &tt.e)
		})
	}
}

func TestLeafRejectsYearOutsideRFC3339(t *testing.T) {
	e := Entry{Time: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Outcome: "ok"}
	b, err := e.Leaf()
	if err == nil {
		t.Fatalf("Leaf = %q, want an error", b)
	}
	if !strings.HasPrefix(err.Error(), "encode ledger entry: ") || !strings.Contains(err.Error(), "year outside of range [0,9999]") {
		t.Fatalf("Leaf error = %q", err)
	}
	var me *json.MarshalerError
	if !errors.As(err, &me) {
		t.Fatalf("Leaf error %v does not wrap a *json.MarshalerError as encoding/json's did", err)
	}
}

func TestLeafDoesNotChangeEntry(t *testing.T) {
	uid := uint32(7)
	paris := time.FixedZone("CET", 3600)
	e := Entry{Time: time.Date(2026, 1, 1, 0, 0, 0, 0, paris), Actor: Actor{UID: &uid}, Detail: map[string]string{"b": "1", "a": "2"}}
	if _, err := e.Leaf(); err != nil {
		t.Fatal(err)
	}
	if e.Time.Location() != paris || e.Actor.UID != &uid || len(e.Detail) != 2 {
		t.Fatalf("Leaf changed its entry: %+v", e)
	}
}

func FuzzLeafMatchesEncodingJSON(f *testing.F) {
	f.Add("file.create", "ana", "/usr/bin/cp", "", "raw", "", "/srv/data/raw/f.tif", "ok", "size", "123", "mode", "0644",
		uint8(3), true, uint32(1000), 4242, int64(1700000000123456789), int16(0), int32(3600))
	f.Add("", "", "", "", "", "", "", "", "", "", "", "", uint8(1), false, uint32(0), 0, int64(0), int16(0), int32(0))
	f.Add("\x00\x1f\x7f", "\xff", "\u2028", "\u2029", "<>&", `"\`, "\n\r\t\b\f", "é", "\xc3", "", "", "x",
		uint8(3), true, uint32(0), -1, int64(-1), int16(8029), int32(-34217))
	f.Add("k", "", "", "", "", "", "", "ok", "", "", "", "",
		uint8(0), false, uint32(0), 0, int64(-1), int16(-1970), int32(0))
	// The fuzzer moves integers only a little from where they start, so
	// start some at the extremes.
	f.Add("k", "u", "", "", "", "", "", "ok", "", "", "", "",
		uint8(0), true, uint32(math.MaxUint32), math.MinInt, int64(0), int16(0), int32(math.MaxInt32))
	f.Add("k", "u", "", "", "", "", "", "ok", "", "", "", "",
		uint8(0), true, uint32(1<<31), math.MaxInt, int64(math.MaxInt64), int16(-300), int32(math.MinInt32))
	f.Add("k", "", "", "", "", "", "", "ok", "", "", "", "",
		uint8(0), false, uint32(0), 0, int64(math.MinInt64), int16(math.MinInt16), int32(0))
	f.Fuzz(func(t *testing.T, kind, user, exe, token, dataset, version, path, outcome, k1, v1, k2, v2 string,
		pairs uint8, hasUID bool, uid uint32, pid int, unixNano int64, years int16, zoneOffset int32) {
		// unixNano spans 1678 to 2262; years moves that as far as the
		// edges of what RFC 3339 can write, and beyond.
		tm := time.Unix(0, unixNano).AddDate(int(years), 0, 0)
		e := Entry{
			Time:    tm.In(time.FixedZone("", int(zoneOffset%(30*3600)))),
			Kind:    kind,
			Actor:   Actor{User: user, PID: pid, Exe: exe, Token: token},
			Dataset: dataset,
			Version: version,
			Path:    path,
			Outcome: outcome,
		}
		if hasUID {
			e.Actor.UID = &uid
		}
		switch pairs % 4 {
		case 1:
			e.Detail = map[string]string{}
		case 2:
			e.Detail = map[string]string{k1: v1}
		case 3:
			e.Detail = map[string]string{k1: v1, k2: v2}
		}
		checkLeafMatchesReference(t, &e)
	})
}

// watcherEntry is what the file watcher records for most events.
func watcherEntry() Entry {
	uid := uint32(1000)
	return Entry{
		Time:    time.Date(2026, 11, 22, 7, 15, 11, 123456789, time.UTC),
		Kind:    "file.create",
		Actor:   Actor{UID: &uid, User: "ana", PID: 48213, Exe: "/usr/bin/rsync"},
		Dataset: "raw",
		Path:    "/srv/data/raw/2026/11/22/instrument-07/run-0042/frame-00123.tif",
		Outcome: "ok",
	}
}

func BenchmarkLeaf(b *testing.B) {
	detailed := watcherEntry()
	detailed.Kind = "file.modify"
	detailed.Detail = map[string]string{"size": "1048576", "mode": "0644", "sha256": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"}
	for _, bm := range []struct {
		name string
		e    Entry
	}{
		{"watcher", watcherEntry()},
		{"detail", detailed},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.e.Leaf(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
