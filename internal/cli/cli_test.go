package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestSplitTargetSeparatesVersionAndSubPath(t *testing.T) {
	cases := map[string][2]string{
		"abcd1234":             {"abcd1234", ""},
		"abcd1234:train/x.bin": {"abcd1234", "train/x.bin"},
		"abcd1234:/train/":     {"abcd1234", "train"},
		"latest:a:b":           {"latest", "a:b"},
	}
	for in, want := range cases {
		v, sub := splitTarget(in)
		if v != want[0] || sub != want[1] {
			t.Errorf("splitTarget(%q) = %q, %q; want %q", in, v, sub, want)
		}
	}
}

func TestDisplayPathQuotesWhatAPersonCannotSee(t *testing.T) {
	cases := map[string]string{"a/b.txt": "a/b.txt", "a\nb": `"a\nb"`, "bad\xff": `"bad\xff"`}
	for in, want := range cases {
		if got := displayPath(in); got != want {
			t.Errorf("displayPath(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestExitCodes(t *testing.T) {
	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"nonsense"}, ExitUsage, "unknown command"},
		{[]string{"report", "lifecycle"}, ExitUsage, `unknown command "lifecycle" for "custody report"`},
		{[]string{"audit", "nonsense"}, ExitUsage, `unknown command "nonsense" for "custody audit"`},
		{[]string{"token", "bogus", "x"}, ExitUsage, `unknown command "bogus" for "custody token"`},
		{[]string{"snapshot"}, ExitUsage, "accepts 1 arg"},
		{[]string{"log", "--vault", "/nonexistent/vault"}, ExitFailure, "not a custody vault"},
		{[]string{"snapshot", "--vault", "/tmp", "--stage", "bogus", "/tmp"}, ExitUsage, "stage"},
		{[]string{"forget", "--vault", "/tmp", "--dataset", "d"}, ExitUsage, "needs a rule"},
	}
	for _, c := range cases {
		var out, errb bytes.Buffer
		code := Main(context.Background(), c.args, strings.NewReader(""), &out, &errb)
		if code != c.code || !strings.Contains(errb.String(), c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errb.String(), c.code, c.msg)
		}
		if n := strings.Count(strings.TrimSpace(errb.String()), "\n"); n != 0 {
			t.Errorf("%v: error is %d lines, want one", c.args, n+1)
		}
	}
}
