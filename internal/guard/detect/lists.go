package detect

import (
	_ "embed"
	"strings"
)

// The shipped lists; see the files for their format and sources.
var (
	//go:embed ransomware_extensions.txt
	ransomwareExtensionsText string
	//go:embed ransom_notes.txt
	ransomNotesText string
)

// ransomwareExts holds the lower-case extensions, without the dot.
var ransomwareExts = func() map[string]bool {
	m := map[string]bool{}
	for _, l := range listLines(ransomwareExtensionsText) {
		m[strings.ToLower(strings.TrimPrefix(l, "."))] = true
	}
	return m
}()

var notes = newNoteMatcher(listLines(ransomNotesText))

// listLines returns the entries of a list: its lines without surrounding
// spaces, skipping empty ones and comments (starting with //).
func listLines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "//") {
			continue
		}
		out = append(out, l)
	}
	return out
}

// noteMatcher matches file names against ransom-note patterns. Each
// pattern's longest literal part is its anchor; a name is only globbed
// against the patterns whose anchor it contains, found through an index
// by the anchor's first byte, so a name costs a few byte comparisons per
// character rather than one glob per pattern.
type noteMatcher struct {
	exact   map[string]string // patterns without '*', normalised → as written
	byFirst [256][]int        // anchor indexes by first byte
	anchors []string          // distinct anchors
	globs   [][]notePattern   // per anchor, the patterns it stands for
}

type notePattern struct {
	norm, orig string
}

func newNoteMatcher(patterns []string) *noteMatcher {
	m := &noteMatcher{exact: map[string]string{}}
	index := map[string]int{}
	for _, p := range patterns {
		n := normaliseNoteName(p)
		if !strings.Contains(n, "*") {
			m.exact[n] = p
			continue
		}
		a := longestLiteral(n)
		if a == "" {
			continue // all stars: would match every name
		}
		i, ok := index[a]
		if !ok {
			i = len(m.anchors)
			index[a] = i
			m.anchors = append(m.anchors, a)
			m.globs = append(m.globs, nil)
			m.byFirst[a[0]] = append(m.byFirst[a[0]], i)
		}
		m.globs[i] = append(m.globs[i], notePattern{n, p})
	}
	return m
}

// match returns the pattern name matches, or "".
func (m *noteMatcher) match(name string) string {
	n := normaliseNoteName(name)
	if p, ok := m.exact[n]; ok {
		return p
	}
	var tried [4]int // anchors already globbed; more than four is rare
	nt := 0
	for i := 0; i < len(n); i++ {
	anchors:
		for _, ai := range m.byFirst[n[i]] {
			a := m.anchors[ai]
			if !strings.HasPrefix(n[i:], a) {
				continue
			}
			for _, t := range tried[:nt] {
				if t == ai {
					continue anchors
				}
			}
			if nt < len(tried) {
				tried[nt] = ai
				nt++
			}
			for _, g := range m.globs[ai] {
				if glob(g.norm, n) {
					return g.orig
				}
			}
		}
	}
	return ""
}

// normaliseNoteName lower-cases s and makes every space and hyphen an
// underscore.
func normaliseNoteName(s string) string {
	b := []byte(strings.ToLower(s))
	for i, c := range b {
		if c == ' ' || c == '-' {
			b[i] = '_'
		}
	}
	return string(b)
}

// longestLiteral is the longest run of pattern p without '*' (p has one).
func longestLiteral(p string) string {
	best := ""
	for _, s := range strings.Split(p, "*") {
		if len(s) > len(best) {
			best = s
		}
	}
	return best
}

// glob reports whether name matches pattern, where '*' matches any run of
// bytes and every other byte itself. It backtracks only to the last '*',
// so it runs in O(len(pattern) × len(name)).
func glob(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			p = star + 1
			mark++
			n = mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
