package audit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/custodyhq/custody/internal/ledger"
)

// StreamOptions tunes a Stream. Zero values take the defaults.
type StreamOptions struct {
	// Checkpoint is the longest time entries may sit in the log without a
	// signed checkpoint covering them, kept in the catalog (default 1 s).
	Checkpoint time.Duration
	// VaultCheckpoint is how often one of those checkpoints is also
	// stored in the vault (default 1 min): the vault keeps every object
	// forever, so it gets one a minute rather than 86,400 a day. Closing
	// the stream always stores the last one there.
	VaultCheckpoint time.Duration
	// MaxBatch caps the entries one append carries (default 5,000).
	MaxBatch int
	// Queue is how many encoded entries may wait for the appender before
	// Add blocks (default 50,000).
	Queue int
	// Linger is how long a batch that found more entries waiting may wait
	// for further ones before it is appended (default 20 ms).
	Linger time.Duration
}

func (o *StreamOptions) defaults() {
	if o.Checkpoint <= 0 {
		o.Checkpoint = time.Second
	}
	if o.VaultCheckpoint <= 0 {
		o.VaultCheckpoint = time.Minute
	}
	if o.MaxBatch <= 0 {
		o.MaxBatch = 5000
	}
	if o.Queue <= 0 {
		o.Queue = 50_000
	}
	if o.Linger <= 0 {
		o.Linger = 20 * time.Millisecond
	}
}

// opTimeout bounds one append or checkpoint.
const opTimeout = time.Minute

// ErrStreamClosed: Add was called after Run returned.
var ErrStreamClosed = errors.New("audit stream is closed")

// Stream appends the entries of a long-running process (a watcher, the
// server) in batches, signing a checkpoint at least every
// StreamOptions.Checkpoint while entries arrive. Its owner calls Run;
// any goroutine may call Add.
type Stream struct {
	r    *Recorder
	opts StreamOptions
	in   chan queued

	// Shutdown: stopping wakes blocked Adds; closed, set under mu once
	// no Add is sending, refuses new ones; then Run drains in.
	stopping chan struct{}
	mu       sync.RWMutex
	closed   bool

	// Appended and Checkpoints count what Run did; read them after Run
	// returns.
	Appended, Checkpoints int64
}

// queued is an entry waiting for the appender, with its leaf.
type queued struct {
	rec []byte
	e   *ledger.Entry
}

// Stream returns a stream appending through r.
func (r *Recorder) Stream(opts StreamOptions) *Stream {
	opts.defaults()
	return &Stream{r: r, opts: opts, in: make(chan queued, opts.Queue), stopping: make(chan struct{})}
}

// Add queues e for appending. It blocks while the queue is full, so a
// flood of events slows its source instead of growing memory, and fails
// once the stream has stopped.
func (s *Stream) Add(ctx context.Context, e ledger.Entry) error {
	rec, err := e.Leaf()
	if err != nil {
		return err
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrStreamClosed
	}
	select {
	case s.in <- queued{rec, &e}:
		return nil
	case <-s.stopping:
		return ErrStreamClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run, called once by the stream's owner, appends queued entries until ctx is done, then appends what is
// still queued, signs a last checkpoint, stores it in the vault and
// returns. An append or checkpoint that fails stops the stream with the
// error: entries must not be dropped silently.
func (s *Stream) Run(ctx context.Context) (err error) {
	batch := make([][]byte, 0, s.opts.MaxBatch)
	entries := make([]*ledger.Entry, 0, s.opts.MaxBatch)
	take := func(q queued) {
		batch = append(batch, q.rec)
		entries = append(entries, q.e)
	}
	// The checkpoint timer runs only while there is something to sign or
	// to store: an idle stream wakes no one (an idle daemon's CPU is its
	// wake-ups).
	tick := time.NewTimer(s.opts.Checkpoint)
	defer tick.Stop()
	armed := true
	arm := func() {
		if !armed {
			tick.Reset(s.opts.Checkpoint)
			armed = true
		}
	}
	var signedSize, vaultSize int64 = -1, -1
	lastVault := time.Now()
	var latest []byte
	var signedAppended int64

	// ctx says when to stop, not to abandon an append half way: each
	// append and checkpoint gets its own bounded time instead.
	flush := func(ctx context.Context) error {
		if len(batch) == 0 {
			return nil
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		if _, err := s.r.log.AppendEntries(ctx, batch, entries); err != nil {
			return fmt.Errorf("audit stream: %w", err)
		}
		s.Appended += int64(len(batch))
		clear(batch)
		clear(entries)
		batch, entries = batch[:0], entries[:0]
		return nil
	}
	checkpoint := func(ctx context.Context, toVault bool) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opTimeout)
		defer cancel()
		size, signed, err := s.r.sign(ctx)
		if err != nil {
			return err
		}
		if size != signedSize {
			if err := s.r.db.SaveCheckpoint(ctx, size, signed); err != nil {
				return fmt.Errorf("audit checkpoint: %w", err)
			}
			signedSize, latest = size, signed
			s.Checkpoints++
		}
		if toVault && signedSize != vaultSize {
			if err := s.r.v.PutCheckpoint(ctx, latest); err != nil {
				return fmt.Errorf("audit checkpoint: %w", err)
			}
			vaultSize, lastVault = signedSize, time.Now()
		}
		return nil
	}
	// On the way out, append and sign what arrived even though ctx is
	// done: the owner is stopping, not abandoning the entries.
	defer func() {
		close(s.stopping)
		s.mu.Lock() // waits for Adds already sending
		s.closed = true
		s.mu.Unlock()
		if err != nil {
			return
		}
		for len(s.in) > 0 {
			take(<-s.in)
			if len(batch) == s.opts.MaxBatch {
				if err = flush(ctx); err != nil {
					return
				}
			}
		}
		if err = flush(ctx); err == nil {
			err = checkpoint(ctx, true)
		}
	}()

	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			armed = false
			if err := flush(ctx); err != nil {
				return err
			}
			toVault := time.Since(lastVault) >= s.opts.VaultCheckpoint
			if s.Appended != signedAppended || toVault && signedSize != vaultSize {
				signedAppended = s.Appended
				if err := checkpoint(ctx, toVault); err != nil {
					return err
				}
			}
			if signedSize != vaultSize { // the vault's copy is still to come
				arm()
			}
		case q := <-s.in:
			take(q)
			// Take what else is waiting, up to a batch; while entries
			// keep coming, wait a little for more, so that a flood is
			// appended in a few large transactions rather than many small.
			linger := time.NewTimer(s.opts.Linger)
		more:
			for len(batch) < s.opts.MaxBatch {
				select {
				case q := <-s.in:
					take(q)
					continue
				default:
				}
				if len(batch) == 1 {
					break more // a lone entry goes at once
				}
				select {
				case q := <-s.in:
					take(q)
				case <-linger.C:
					break more
				case <-ctx.Done():
					break more
				}
			}
			linger.Stop()
			if err := flush(ctx); err != nil {
				return err
			}
			arm()
		}
	}
}
