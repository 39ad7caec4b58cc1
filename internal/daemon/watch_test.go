package daemon

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/custodyhq/custody/internal/ledger"
	"github.com/custodyhq/custody/internal/watch"
)

func TestEntryKeepsEveryByteOfAPath(t *testing.T) {
	uid := uint32(65534)
	odd := "/data/raw/name with spaces\nand \xff\xfe.csv"
	e := Entry(watch.Event{Time: time.Unix(1, 0), Kind: watch.Rename, Path: odd, OldPath: "/data/raw/old\xff", Root: "/data/raw",
		Principal: watch.Principal{UID: &uid, User: "nobody", PID: 7, Exe: "/bin/mv"}, Count: 3, Dir: true}, "raw")
	if e.Kind != "file.rename" || e.Dataset != "raw" || e.Path != "/data/raw/name with spaces\nand \\xff\\xfe.csv" || e.Actor.User != "nobody" || *e.Actor.UID != 65534 {
		t.Fatalf("entry: %+v", e)
	}
	raw, err := base64.StdEncoding.DecodeString(e.Detail["path_b64"])
	if err != nil || string(raw) != odd {
		t.Fatalf("path_b64 = %q (%v), want the exact bytes", raw, err)
	}
	if e.Detail["old_path"] != "/data/raw/old\\xff" || e.Detail["old_path_b64"] == "" || e.Detail["count"] != "3" || e.Detail["dir"] != "1" {
		t.Fatalf("detail: %v", e.Detail)
	}
	// The leaf is valid canonical JSON and parses back to the same entry.
	leaf, err := e.Leaf()
	if err != nil {
		t.Fatal(err)
	}
	back, err := ledger.ParseLeaf(leaf)
	if err != nil || back.Path != e.Path || back.Detail["path_b64"] != e.Detail["path_b64"] {
		t.Fatalf("round trip: %+v %v", back, err)
	}
	moved := Entry(watch.Event{Time: time.Unix(1, 0), Kind: watch.Delete, Path: "/d/x", Detail: map[string]string{"moved_to": "/elsewhere/\xff"}}, "d")
	if moved.Detail["moved_to"] != "/elsewhere/\\xff" || moved.Detail["moved_to_b64"] != base64.StdEncoding.EncodeToString([]byte("/elsewhere/\xff")) {
		t.Fatalf("moved_to: %v", moved.Detail)
	}
	plain := Entry(watch.Event{Time: time.Unix(1, 0), Kind: watch.Create, Path: "/d/ok.txt"}, "d")
	if plain.Path != "/d/ok.txt" || plain.Detail != nil {
		t.Fatalf("plain entry: %+v", plain)
	}
}
