package detect

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/custodyhq/custody/internal/watch"
)

func TestRansomNoteNamesMatchNotesNotReadmes(t *testing.T) {
	notes := []string{
		"README_DECRYPT.txt", "readme_decrypt.html", "HOW_TO_DECRYPT.txt", "How To Decrypt Files.html",
		"how-to-decrypt.hta", "DECRYPT_MY_FILES.txt", "# DECRYPT MY FILES #.txt", "!!!READ_ME!!!.txt",
		"!!!READ_ME_MEDUSA!!!.txt", "RESTORE_FILES_INFO.txt", "Restore-My-Files.txt", "file_RECOVER_info.txt",
		"HELP_DECRYPT.PNG", "HELP_DECRYPT.url", "#README#.txt", "readme-warning.txt", "_readme.txt",
		"info.hta", "RECOVER-a1b2c3-FILES.txt", "DECRYPT-FILES.html", "@Please_Read_Me@.txt",
		"_HELP_instructions.html", "RyukReadMe.txt", "akira_readme.txt", "KRAB-DECRYPT.txt",
		"+REcovER+abcde+.txt", "_ReCoVeRy_+abcde.png", "FILES ENCRYPTED.txt", "HOW_TO_BACK_FILES.html",
		"README_DECRYPT",
	}
	benign := []string{
		"README.md", "README.txt", "readme.txt", "ReadMe.txt", "README", "HELP.md", "INSTRUCTIONS.txt",
		"decrypt_files.py", "restore_files.py", "HOW_TO_DECRYPT.md", "restore_files.json", "recovery.md",
		"data_recovery_report.pdf", "recover.csv", "train.csv", "decrypt.go", "key_decrypt_test.go",
		"how_to_restore.txt", "restore.txt", "files.txt", "encrypted.csv",
	}
	for _, name := range notes {
		if notesMatch(name) == "" {
			t.Errorf("%q is not taken for a ransom note", name)
		}
	}
	for _, name := range benign {
		if p := notesMatch(name); p != "" {
			t.Errorf("%q is taken for a ransom note (%s)", name, p)
		}
	}
}

// notesMatch applies RansomNote's judgement of a name alone.
func notesMatch(name string) string {
	sigs := NewRansomNote().Observe(ev(watch.Create, "/d/"+name, uid(1), 0))
	if len(sigs) == 0 {
		return ""
	}
	return sigs[0].Reason
}

func TestRansomNoteInThreeDirectoriesIsDecisive(t *testing.T) {
	u1, u2, u3 := uid(1000), uid(1001), uid(1002)
	tests := []struct {
		name string
		in   []Input
		want []Strength
	}{
		{
			name: "the same note in three directories by one principal is Decisive",
			in: []Input{
				ev(watch.Create, "/d/a/README_DECRYPT.txt", u1, 0),
				ev(watch.Create, "/d/b/README_DECRYPT.txt", u1, 1),
				ev(watch.Create, "/d/c/README_DECRYPT.txt", u1, 2),
				ev(watch.Create, "/d/e/README_DECRYPT.txt", u1, 3),
			},
			want: []Strength{Strong, Strong, Decisive, Decisive},
		},
		{
			name: "case and separators do not make notes different",
			in: []Input{
				ev(watch.Create, "/d/a/How To Decrypt.txt", u1, 0),
				ev(watch.Create, "/d/b/how_to_decrypt.txt", u1, 1),
				ev(watch.Create, "/d/c/HOW-TO-DECRYPT.TXT", u1, 2),
			},
			want: []Strength{Strong, Strong, Decisive},
		},
		{
			name: "three principals making one note each is Strong each",
			in: []Input{
				ev(watch.Create, "/d/a/README_DECRYPT.txt", u1, 0),
				ev(watch.Create, "/d/b/README_DECRYPT.txt", u2, 1),
				ev(watch.Create, "/d/c/README_DECRYPT.txt", u3, 2),
			},
			want: []Strength{Strong, Strong, Strong},
		},
		{
			name: "the same directory again does not count twice",
			in: []Input{
				ev(watch.Create, "/d/a/README_DECRYPT.txt", u1, 0),
				ev(watch.Create, "/d/a/README_DECRYPT.txt", u1, 1),
				ev(watch.Create, "/d/b/README_DECRYPT.txt", u1, 2),
			},
			want: []Strength{Strong, Strong, Strong},
		},
		{
			name: "unknown principals are one principal",
			in: []Input{
				ev(watch.Create, "/d/a/_readme.txt", nil, 0),
				ev(watch.Create, "/d/b/_readme.txt", nil, 1),
				ev(watch.Create, "/d/c/_readme.txt", nil, 2),
			},
			want: []Strength{Strong, Strong, Decisive},
		},
		{
			name: "a note renamed into place is Strong",
			in:   []Input{rename("/d/a/.tmp123", "/d/a/HOW_TO_DECRYPT.html", u1, 0)},
			want: []Strength{Strong},
		},
		{
			name: "writes to a note are not new notes",
			in:   []Input{ev(watch.Modify, "/d/a/README_DECRYPT.txt", u1, 0), ev(watch.CloseWrite, "/d/a/README_DECRYPT.txt", u1, 0)},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sigs := observeAll(NewRansomNote(), tc.in)
			if got := strengths(sigs); !slices.Equal(got, tc.want) {
				t.Fatalf("strengths %v, want %v; %+v", got, tc.want, sigs)
			}
		})
	}
}

func TestRansomNoteMemoryIsBounded(t *testing.T) {
	r := NewRansomNote()
	for i := range 2 * maxNotePrincipals {
		r.Observe(ev(watch.Create, "/d/a/README_DECRYPT.txt", uid(uint32(i)), 0))
	}
	if len(r.per) > maxNotePrincipals {
		t.Errorf("%d principals", len(r.per))
	}
	for i := range 3 * maxNotesPerActor {
		r.Observe(ev(watch.Create, "/d/a/README_DECRYPT"+strings.Repeat("x", i%200)+string(rune('a'+i%26))+".txt", uid(1), 0))
	}
	if n := len(r.per[principalOf(watch.Principal{UID: uid(1)})].dirs); n > maxNotesPerActor {
		t.Errorf("%d notes", n)
	}
}

func TestShippedListsAreWellFormed(t *testing.T) {
	if len(ransomwareExts) < 150 {
		t.Errorf("%d ransomware extensions, want at least 150", len(ransomwareExts))
	}
	valid := regexp.MustCompile(`^[a-z0-9_!@$~+-]+$`)
	seen := map[string]bool{}
	for _, l := range listLines(ransomwareExtensionsText) {
		e := strings.ToLower(strings.TrimPrefix(l, "."))
		if !valid.MatchString(e) || len(e) > maxExtLen {
			t.Errorf("extension %q is malformed", l)
		}
		if seen[e] {
			t.Errorf("extension %q listed twice", l)
		}
		seen[e] = true
		if _, ok := typeByExt[e]; ok {
			t.Errorf("extension %q is also an ordinary file type", l)
		}
		if benignSuffix(e) {
			t.Errorf("extension %q is also an ordinary suffix", l)
		}
	}
	pats := listLines(ransomNotesText)
	if len(pats) < 40 {
		t.Errorf("%d note patterns", len(pats))
	}
	seenPat := map[string]bool{}
	for _, p := range pats {
		n := normaliseNoteName(p)
		if seenPat[n] {
			t.Errorf("note pattern %q listed twice", p)
		}
		seenPat[n] = true
		if longestLiteral(n+"*") == "" {
			t.Errorf("note pattern %q has no literal part", p)
		}
		example := strings.ReplaceAll(p, "*", "x")
		if !strings.Contains(example, ".") {
			example += ".txt"
		}
		if notes.match(example) == "" {
			t.Errorf("note pattern %q does not match its own example %q", p, example)
		}
	}
}

func TestGlobMatchesStars(t *testing.T) {
	tests := []struct {
		pattern, name string
		want          bool
	}{
		{"*", "", true},
		{"a*", "abc", true},
		{"*c", "abc", true},
		{"*decrypt*files*", "how_to_decrypt_your_files.txt", true},
		{"*decrypt*files*", "files_decrypt", false},
		{"a*b*c", "aXbYbZc", true},
		{"a*b*c", "aXbYbZ", false},
		{"abc", "abc", true},
		{"abc", "abcd", false},
		{"**", "x", true},
	}
	for _, tc := range tests {
		if got := glob(tc.pattern, tc.name); got != tc.want {
			t.Errorf("glob(%q, %q) = %v, want %v", tc.pattern, tc.name, got, tc.want)
		}
	}
}
