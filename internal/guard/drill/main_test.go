package drill

import (
	"bytes"
	"path/filepath"
	"testing"
)

func TestMainExitCodes(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"no command", nil, ExitUsage},
		{"unknown command", []string{"explode"}, ExitUsage},
		{"attack without variant", []string{"attack", "--dir", dir}, ExitUsage},
		{"attack without dir", []string{"attack", "--variant", MassDelete}, ExitUsage},
		{"bad flag", []string{"prepare", "--dir", dir, "--files", "x"}, ExitUsage},
		{"stray argument", []string{"prepare", "--dir", dir, "--files", "3", "extra"}, ExitUsage},
		{"unknown variant", []string{"attack", "--variant", "wipe", "--dir", dir}, ExitFailed},
		{"missing dir", []string{"attack", "--variant", MassDelete, "--dir", filepath.Join(dir, "none")}, ExitFailed},
		{"prepare", []string{"prepare", "--dir", filepath.Join(dir, "p"), "--files", "5"}, ExitOK},
		{"benign", []string{"benign", "--workload", CleanCSV, "--dir", filepath.Join(dir, "p"), "--scale", "5"}, ExitOK},
	}
	for _, tt := range tests {
		var stdout, stderr bytes.Buffer
		if got := Main(tt.args, &stdout, &stderr); got != tt.want {
			t.Errorf("%s: Main(%q) = %d, want %d; stderr: %s", tt.name, tt.args, got, tt.want, stderr.String())
		}
	}
}

func TestMainAttackWritesProgressToStdout(t *testing.T) {
	dir, paths, _ := tree(t, 12)
	var stdout, stderr bytes.Buffer
	if got := Main([]string{"attack", "--variant", EncryptRename, "--dir", dir, "--ext", "zz9xq1"}, &stdout, &stderr); got != ExitOK {
		t.Fatalf("exit %d: %s", got, stderr.String())
	}
	lines := progressLines(t, stdout.Bytes())
	if len(lines) != len(paths) {
		t.Fatalf("%d progress lines, want %d", len(lines), len(paths))
	}
	if lines[0].To != paths[0]+".zz9xq1" {
		t.Errorf("first line renames to %q, want %q", lines[0].To, paths[0]+".zz9xq1")
	}
}
