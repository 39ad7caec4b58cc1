package cli

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"io"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(v)
}

// displayPath shows a path to a person: as it is when printable, else
// Go-quoted so newlines and invalid bytes are visible and unambiguous.
func displayPath(p string) string {
	if utf8.ValidString(p) {
		printable := true
		for _, r := range p {
			if !unicode.IsPrint(r) {
				printable = false
				break
			}
		}
		if printable {
			return p
		}
	}
	return strconv.Quote(p)
}

// jsonPath is a path in JSON: "path" always (invalid bytes replaced), plus
// "path_raw" (base64 of the exact bytes) when the path is not valid UTF-8.
type jsonPath struct {
	Path    string `json:"path"`
	PathRaw string `json:"path_raw,omitempty"`
}

func newJSONPath(p string) jsonPath {
	jp := jsonPath{Path: p}
	if !utf8.ValidString(p) {
		jp.Path = strconv.Quote(p)
		jp.PathRaw = base64.StdEncoding.EncodeToString([]byte(p))
	}
	return jp
}

// delayedWriter buffers what is written and flushes it at most delay
// later, so a flood of event lines costs a few write calls rather than one
// each, while a quiet stream still shows each line promptly. It is safe
// for concurrent use; Close flushes what is left.
type delayedWriter struct {
	mu    sync.Mutex
	w     *bufio.Writer
	delay time.Duration
	timer *time.Timer
	err   error
}

func newDelayedWriter(w io.Writer, delay time.Duration) *delayedWriter {
	return &delayedWriter{w: bufio.NewWriterSize(w, 64<<10), delay: delay}
}

func (d *delayedWriter) Write(p []byte) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.err != nil {
		return 0, d.err
	}
	if d.w.Buffered() == 0 {
		if d.timer == nil {
			d.timer = time.AfterFunc(d.delay, d.flush)
		} else {
			d.timer.Reset(d.delay)
		}
	}
	return d.w.Write(p)
}

func (d *delayedWriter) flush() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.w.Flush(); err != nil && d.err == nil {
		d.err = err
	}
}

// Close stops the timer and flushes.
func (d *delayedWriter) Close() error {
	d.mu.Lock()
	if d.timer != nil {
		d.timer.Stop()
	}
	d.mu.Unlock()
	d.flush()
	return d.err
}
