package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Error is one mistake in a config file.
type Error struct {
	File   string
	Line   int    // 1-based; 0 when unknown
	Column int    // 1-based; 0 when unknown
	Field  string // the field path, e.g. datasets[2].stage; "" for the file
	Msg    string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Limits that keep a hostile file cheap: aliases can make a few lines a
// tree of billions of nodes, and one mistake repeated through them would
// give as many errors.
const (
	maxNodes  = 1 << 20
	maxErrors = 100
)

// mark is where something is written in the file.
type mark struct{ line, col int }

func markOf(n *yaml.Node) mark { return mark{n.Line, n.Column} }

// decoder turns the YAML tree into a Config, field by field, so that each
// mistake can name its field and place. It records where each field path
// was written for the checks that run after decoding.
type decoder struct {
	file     string
	errs     []*Error
	more     bool            // errors were dropped past maxErrors
	pos      map[string]mark // where each field path was written: its key, or the list item
	set      map[string]bool // paths given a non-null value
	bad      map[string]bool // paths whose value could not be decoded
	budget   int             // nodes left to visit
	overflow bool            // the budget ran out
}

func newDecoder(file string) *decoder {
	return &decoder{
		file:   file,
		pos:    map[string]mark{},
		set:    map[string]bool{},
		bad:    map[string]bool{},
		budget: maxNodes,
	}
}

// errorAt records a mistake at m.
func (d *decoder) errorAt(m mark, path, format string, args ...any) {
	if len(d.errs) >= maxErrors {
		d.more = true
		return
	}
	d.errs = append(d.errs, &Error{File: d.file, Line: m.line, Column: m.col, Field: path, Msg: fmt.Sprintf(format, args...)})
}

// fail records that the value at path could not be decoded.
func (d *decoder) fail(path, format string, args ...any) {
	d.bad[path] = true
	d.errorAt(d.pos[path], path, format, args...)
}

// errorf records a mistake found by a check, at the field if it was
// written, else at the nearest enclosing one; it says nothing about a
// field whose value (or an enclosing one) already failed to decode.
func (d *decoder) errorf(path, format string, args ...any) {
	m, found := mark{}, false
	for p := path; ; p = parent(p) {
		if d.bad[p] {
			return
		}
		if pm, ok := d.pos[p]; ok && !found {
			m, found = pm, true
		}
		if p == "" {
			break
		}
	}
	d.errorAt(m, path, format, args...)
}

// parent is the path enclosing p: datasets[2].stage → datasets[2] →
// datasets → "".
func parent(p string) string {
	i := strings.LastIndexAny(p, ".[")
	if i < 0 {
		return ""
	}
	return p[:i]
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// sorted is every mistake in file order.
func (d *decoder) sorted() []error {
	slices.SortStableFunc(d.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	errs := make([]error, 0, len(d.errs)+1)
	for _, e := range d.errs {
		errs = append(errs, e)
	}
	if d.more {
		errs = append(errs, &Error{File: d.file, Msg: fmt.Sprintf("more mistakes not shown: fix these %d first", maxErrors)})
	}
	return errs
}

var syntaxLine = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// document parses b and returns its top node; false when the file is
// empty or not YAML (with the error recorded).
func (d *decoder) document(b []byte) (*yaml.Node, bool) {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var doc yaml.Node
	if err := decodeNode(dec, &doc); err != nil {
		if !errors.Is(err, io.EOF) {
			d.syntax(err)
		}
		return nil, false
	}
	var next yaml.Node
	switch err := decodeNode(dec, &next); {
	case err == nil:
		d.errorAt(markOf(&next), "", "a second YAML document: a config file holds one (remove the ---)")
	case !errors.Is(err, io.EOF):
		d.syntax(err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil, false
	}
	return doc.Content[0], true
}

// decodeNode keeps a parser panic from escaping Parse.
func decodeNode(dec *yaml.Decoder, n *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("yaml: the parser failed: %v", r)
		}
	}()
	return dec.Decode(n)
}

// syntax records a YAML syntax error, which knows its line only.
func (d *decoder) syntax(err error) {
	msg := err.Error()
	if m := syntaxLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		d.errorAt(mark{line: line}, "", "YAML syntax: %s", m[2])
		return
	}
	d.errorAt(mark{}, "", "YAML syntax: %s", strings.TrimPrefix(msg, "yaml: "))
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	writerType   = reflect.TypeFor[Writer]()
	webhookType  = reflect.TypeFor[Webhook]()
)

func cfgValue(c *Config) reflect.Value { return reflect.ValueOf(c).Elem() }

// value decodes n into v; at is where the field path was written.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, at mark) {
	d.pos[path] = at
	for ; n.Kind == yaml.AliasNode; n = n.Alias {
		if n.Alias == nil { // the parser refuses unknown anchors; be safe
			d.fail(path, "an alias to nothing")
			return
		}
		if d.budget--; d.budget < 0 {
			d.overBudget(path)
			return
		}
	}
	if d.budget--; d.budget < 0 {
		d.overBudget(path)
		return
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return // as if absent
	}
	d.set[path] = true
	switch {
	case v.Type() == durationType, v.Type() == writerType:
		d.scalar(n, v, path)
	case v.Kind() == reflect.Struct:
		d.mapping(n, v, path)
	case v.Kind() == reflect.Slice:
		d.sequence(n, v, path)
	default:
		d.scalar(n, v, path)
	}
}

func (d *decoder) overBudget(path string) {
	if !d.overflow {
		d.overflow = true
		d.fail(path, "the file expands to over %d values (aliases?)", maxNodes)
	}
}

// describe names what n is, for "want X, found Y".
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		return quote(n.Value)
	}
	return "nothing usable"
}

// quote shows a value in a message, shortened.
func quote(s string) string {
	if r := []rune(s); len(r) > 60 {
		s = string(r[:57]) + "..."
	}
	return strconv.Quote(s)
}

type pair struct{ key, val *yaml.Node }

func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(path, "want a mapping (name: value lines), found %s", describe(n))
		return
	}
	t := v.Type()
	var names []string
	index := map[string]int{}
	for i := range t.NumField() {
		if name := t.Field(i).Tag.Get("yaml"); name != "" {
			names = append(names, name)
			index[name] = i
		}
	}
	seen := map[string]int{}
	for _, p := range d.pairs(n, 0) {
		if p.key.Kind != yaml.ScalarNode {
			d.errorAt(markOf(p.key), path, "a key must be a plain name, found %s", describe(p.key))
			continue
		}
		name := p.key.Value
		fp := join(path, name)
		if line, dup := seen[name]; dup {
			d.errorAt(markOf(p.key), fp, "set twice (first on line %d)", line)
			continue
		}
		seen[name] = p.key.Line
		i, ok := index[name]
		if !ok {
			d.unknown(markOf(p.key), fp, name, names)
			continue
		}
		d.value(p.val, v.Field(i), fp, markOf(p.key))
	}
}

// pairs lists n's keys and values with YAML merge keys (<<: *anchor)
// applied: a key written in n wins over a merged one, and among merged
// mappings the first listed wins.
func (d *decoder) pairs(n *yaml.Node, depth int) []pair {
	if d.budget -= len(n.Content)/2 + 1; d.budget < 0 {
		d.overBudget("")
		return nil
	}
	var own, merged []pair
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!merge" {
			own = append(own, pair{k, v})
			continue
		}
		srcs := []*yaml.Node{v}
		if v.Kind == yaml.SequenceNode {
			srcs = v.Content
		}
		for _, src := range srcs {
			for src.Kind == yaml.AliasNode && src.Alias != nil && d.budget > 0 {
				src, d.budget = src.Alias, d.budget-1
			}
			if src.Kind != yaml.MappingNode || depth > 32 {
				d.errorAt(markOf(k), "", "<< must merge a mapping (<<: *anchor)")
				continue
			}
			merged = append(merged, d.pairs(src, depth+1)...)
		}
	}
	have := map[string]bool{}
	for _, p := range own {
		if p.key.Kind == yaml.ScalarNode {
			have[p.key.Value] = true
		}
	}
	for _, p := range merged {
		if p.key.Kind == yaml.ScalarNode && !have[p.key.Value] {
			have[p.key.Value] = true
			own = append(own, p)
		}
	}
	return own
}

// unknown reports a key that is no field, suggesting the closest one.
func (d *decoder) unknown(at mark, path, name string, known []string) {
	if s := suggest(name, known); s != "" {
		d.errorAt(at, path, "unknown field (did you mean %q?)", s)
		return
	}
	d.errorAt(at, path, "unknown field (known here: %s)", strings.Join(known, ", "))
}

func (d *decoder) sequence(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.SequenceNode {
		found := describe(n)
		if v.Type().Elem() == webhookType && n.Kind == yaml.ScalarNode {
			found = quote(redactURL(n.Value))
		}
		d.fail(path, "want a list ([a, b] or lines starting with -), found %s", found)
		return
	}
	s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
	for i, item := range n.Content {
		d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), markOf(item))
	}
	v.Set(s)
}

func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.ScalarNode {
		d.fail(path, "want a single value, found %s", describe(n))
		return
	}
	s := n.Value
	switch {
	case v.Type() == durationType:
		dur, err := ParseDuration(s)
		if err != nil {
			d.fail(path, "%v", err)
			return
		}
		v.SetInt(int64(dur))
	case v.Type() == writerType:
		w, err := parseWriter(s)
		if err != nil {
			d.fail(path, "%v", err)
			return
		}
		v.Set(reflect.ValueOf(w))
	case v.Kind() == reflect.String:
		v.SetString(s)
	case v.Kind() == reflect.Bool:
		switch s {
		case "true", "True", "TRUE":
			v.SetBool(true)
		case "false", "False", "FALSE":
			v.SetBool(false)
		default:
			d.fail(path, "%s is not true or false", quote(s))
		}
	case v.Kind() == reflect.Int:
		i, err := strconv.ParseInt(s, 10, 64)
		if err != nil || v.OverflowInt(i) {
			d.fail(path, "%s is not a whole number", quote(s))
			return
		}
		v.SetInt(i)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
			d.fail(path, "%s is not a number", quote(s))
			return
		}
		v.SetFloat(f)
	default:
		panic(fmt.Sprintf("config: no decoder for %s", v.Type())) // a new field type needs a case here
	}
}

// parseWriter reads a uid or a user name; names are looked up later.
func parseWriter(s string) (Writer, error) {
	if s == "" {
		return Writer{}, errors.New("an empty writer: give a uid or a user name")
	}
	if strings.Trim(s, "+-0123456789") == "" {
		uid, err := strconv.ParseUint(s, 10, 32)
		if err != nil {
			return Writer{}, fmt.Errorf("%s is not a uid (0 to %d)", quote(s), uint32(math.MaxUint32))
		}
		return Writer{UID: uint32(uid)}, nil
	}
	return Writer{Name: s}, nil
}

// suggest is the known name closest to name, or "" if none is close:
// the same but for case, '_' and '-', or a few typing slips away.
func suggest(name string, known []string) string {
	norm := func(s string) string {
		return strings.NewReplacer("_", "", "-", "").Replace(strings.ToLower(s))
	}
	best, bestDist := "", math.MaxInt
	for _, k := range known {
		if norm(k) == norm(name) {
			return k
		}
		if dist := editDistance(name, k); dist <= max(1, len(k)/3) && dist < bestDist {
			best, bestDist = k, dist
		}
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b:
// insertions, deletions, substitutions and swaps of neighbours, each 1.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	if len(ra) > 64 || len(rb) > 64 {
		return math.MaxInt // no one mistypes a name that long
	}
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}
