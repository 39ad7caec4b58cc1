package lockout

import (
	"slices"
	"testing"
)

func TestParseStatus(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want creds
		ok   bool
	}{
		{"typical", "Name:\tcat\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t42\nNgid:\t0\nPid:\t43\n" +
			"Uid:\t1000\t1001\t1002\t1003\nGid:\t5\t5\t5\t5\n",
			creds{tgid: 42, state: 'S', real: 1000, effective: 1001, saved: 1002, fs: 1003}, true},
		{"zombie", "State:\tZ (zombie)\nTgid:\t7\nUid:\t0\t0\t0\t0\n", creds{tgid: 7, state: 'Z'}, true},
		{"no uid line", "Tgid:\t7\n", creds{}, false},
		{"no tgid line", "Uid:\t1\t1\t1\t1\n", creds{}, false},
		{"short uid line", "Tgid:\t7\nUid:\t1\t1\t1\n", creds{}, false},
		{"uid out of range", "Tgid:\t7\nUid:\t1\t1\t1\t4294967296\n", creds{}, false},
		{"empty", "", creds{}, false},
	}
	for _, c := range cases {
		got, err := parseStatus([]byte(c.in))
		if (err == nil) != c.ok || c.ok && got != c.want {
			t.Errorf("%s: parseStatus = %+v, %v; want %+v, ok %v", c.name, got, err, c.want, c.ok)
		}
	}
}

func TestLockedUIDPrefersFilesystemUID(t *testing.T) {
	c := creds{real: 1, effective: 2, saved: 3, fs: 4}
	cases := []struct {
		locked []uint32
		want   uint32
		ok     bool
	}{
		{[]uint32{1, 2, 4}, 4, true},
		{[]uint32{1, 2}, 2, true},
		{[]uint32{1}, 1, true},
		{[]uint32{3}, 0, false}, // the saved uid does not count
		{nil, 0, false},
	}
	for _, x := range cases {
		if got, ok := c.lockedUID(x.locked); got != x.want || ok != x.ok {
			t.Errorf("lockedUID(%v) = %d, %v; want %d, %v", x.locked, got, ok, x.want, x.ok)
		}
	}
}

func TestUnder(t *testing.T) {
	cases := []struct {
		path, root string
		want       bool
	}{
		{"/data", "/data", true},
		{"/data/a/b", "/data", true},
		{"/data2/a", "/data", false},
		{"/dat", "/data", false},
		{"/anything", "/", true},
		{"/data/x (deleted)", "/data", true},
	}
	for _, c := range cases {
		if got := under(c.path, c.root); got != c.want {
			t.Errorf("under(%q, %q) = %v", c.path, c.root, got)
		}
	}
}

func TestMapsPaths(t *testing.T) {
	in := "55d0c0a00000-55d0c0a02000 r--p 00000000 fe:01 1234   /usr/bin/cat\n" +
		"55d0c0a02000-55d0c0a06000 r-xp 00002000 fe:01 1234   /usr/bin/cat\n" +
		"7f0000000000-7f0000001000 rw-s 00000000 00:2a 99     /data/a file with spaces\n" +
		"7f0000002000-7f0000003000 rw-p 00000000 00:00 0 \n" +
		"7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0      [stack]\n"
	want := []string{"/usr/bin/cat", "/data/a file with spaces"}
	if got := mapsPaths([]byte(in)); !slices.Equal(got, want) {
		t.Errorf("mapsPaths = %q, want %q", got, want)
	}
}

func FuzzParseStatus(f *testing.F) {
	f.Add([]byte("State:\tS (sleeping)\nTgid:\t42\nUid:\t1\t2\t3\t4\n"))
	f.Add([]byte("State:\nTgid:\nUid:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := parseStatus(b)
		if err == nil && c.tgid < 0 {
			t.Errorf("negative tgid %d", c.tgid)
		}
	})
}
