package cli

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// progress draws a bar on stderr when it is a terminal; otherwise nothing
// (commands print a one-line summary at the end instead).
type progress struct {
	mu   sync.Mutex
	bar  *progressbar.ProgressBar
	last time.Time
}

func newProgress(w io.Writer, total int64, what string) *progress {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return &progress{}
	}
	return &progress{bar: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionShowBytes(true),
		progressbar.OptionSetDescription(what),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionShowCount(),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetWidth(30),
	)}
}

// set moves the bar to n bytes with a note, at most ten times a second.
func (p *progress) set(n uint64, files uint64) {
	if p.bar == nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if time.Since(p.last) < 100*time.Millisecond {
		return
	}
	p.last = time.Now()
	p.bar.Describe(fmt.Sprintf("%d files", files))
	p.bar.Set64(int64(n))
}

func (p *progress) done() {
	if p.bar != nil {
		p.bar.Finish()
	}
}
