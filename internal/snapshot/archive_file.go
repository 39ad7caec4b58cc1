package snapshot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/custodyhq/custody/internal/chunker"
	"github.com/custodyhq/custody/internal/vault"
)

// File contents flow like this: a traversal goroutine reads one file and
// cuts it into chunks, in order; each chunk goes to the pool of storing
// workers, which hash it and hand it to SaveBlob (compression and
// encryption, the expensive part) and write its id into the file's slot
// for that chunk index. So a single large file keeps every worker busy,
// and many files keep several readers busy. A token per chunk buffer
// bounds memory at 2×Workers+2 chunks in flight.

// chunkJob is one chunk on its way to a storing worker.
type chunkJob struct {
	buf  *[]byte // pooled buffer that holds data
	data []byte
	dst  *contentIDs
	idx  int             // chunk index within the file
	done *sync.WaitGroup // the directory's chunks in flight
}

// contentIDs collects a file's chunk ids as the workers finish them, in
// any order.
type contentIDs struct {
	mu   sync.Mutex
	ids  []vault.ID
	path string // for error messages
}

func (c *contentIDs) set(i int, id vault.ID) {
	c.mu.Lock()
	if i >= len(c.ids) {
		c.ids = append(c.ids, make([]vault.ID, i+1-len(c.ids))...)
	}
	c.ids[i] = id
	c.mu.Unlock()
}

// storeChunks is one storing worker; it runs until the walk closes jobs.
// After a failure or cancellation it keeps draining, so that no reader
// waits for a chunk that is never stored.
func (a *archiver) storeChunks(ctx context.Context) error {
	var first error
	for j := range a.jobs {
		if first == nil && ctx.Err() == nil {
			if err := a.storeChunk(ctx, j); err != nil {
				first = err
				a.abort(err) // before release: a directory must not see the hole
			}
		}
		a.release(j)
	}
	return first
}

func (a *archiver) storeChunk(ctx context.Context, j chunkJob) error {
	id := a.blobs.BlobID(j.data)
	n, err := a.blobs.SaveBlob(ctx, vault.DataBlob, id, j.data)
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return fmt.Errorf("%s: store chunk: %w", j.dst.path, err)
	}
	if n > 0 {
		a.newBytes.Add(uint64(len(j.data)))
		a.storedBytes.Add(uint64(n))
	}
	j.dst.set(j.idx, id)
	return nil
}

// release returns a job's buffer and token and marks it done.
func (a *archiver) release(j chunkJob) {
	*j.buf = j.data[:0] // keep a buffer the chunker had to grow
	a.putBuf(j.buf)
	<-a.tokens
	j.done.Done()
}

// getBuf returns a free chunk buffer; the caller holds a token.
func (a *archiver) getBuf() *[]byte {
	select {
	case b := <-a.bufs:
		return b
	default:
		return new([]byte)
	}
}

func (a *archiver) putBuf(b *[]byte) {
	select {
	case a.bufs <- b:
	default: // cannot happen while tokens bound the buffers; drop it
	}
}

// readFile reads the regular file d.nodes[i] and fills in its metadata
// from the open file. A file that changes while it is read is read again,
// up to readAttempts times; then the last read is kept and flagged.
func (a *archiver) readFile(ctx context.Context, d *dirScan, i int) error {
	n := &d.nodes[i]
	name := n.RawName()
	path := joinPath(d.path, name)
	fd, err := a.open(d.fd, string(name), unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY)
	if err != nil {
		return a.drop(d, i, path, "open", err)
	}
	defer unix.Close(fd)

	var st, after unix.Stat_t
	var ids *contentIDs
	var size int64
	changed := false
	for attempt := 1; ; attempt++ {
		if err := unix.Fstat(fd, &st); err != nil {
			return &os.PathError{Op: "fstat", Path: path, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			// O_NONBLOCK made opening a FIFO that replaced the file harmless.
			return a.drop(d, i, path, "fstat", unix.ENXIO)
		}
		ids = &contentIDs{path: path}
		if size, err = a.chunkFile(ctx, d, fd, st.Size, ids); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("%s: read: %w", path, err)
		}
		if a.afterRead != nil {
			a.afterRead(path)
		}
		if err := unix.Fstat(fd, &after); err != nil {
			return &os.PathError{Op: "fstat", Path: path, Err: err}
		}
		// A short read with an unchanged stat would be a half-read file
		// stored silently; treat it as a change too.
		changed = !sameFileVersion(&st, &after) || size != st.Size
		if !changed || attempt == readAttempts {
			break
		}
	}
	xattrs, err := fdXattrs(fd)
	if err != nil {
		return fmt.Errorf("%s: read xattrs: %w", path, err)
	}

	n.setStat(&st)
	n.User, n.Group = a.names.user(st.Uid), a.names.group(st.Gid)
	n.Size = uint64(size)
	n.Xattrs = xattrs
	n.ChangedWhileRead = changed
	d.content[i] = ids
	if changed {
		a.changed(path)
	}
	a.files.Add(1)
	a.fileBytes.Add(uint64(size))
	a.progress(path)
	return nil
}

// sameFileVersion reports whether two fstats of one open file show no change.
func sameFileVersion(x, y *unix.Stat_t) bool {
	return x.Size == y.Size && x.Mtim == y.Mtim && x.Ctim == y.Ctim && x.Ino == y.Ino
}

// chunkFile cuts the first size bytes of fd into chunks and queues them
// for storing under ids. It returns the bytes read, fewer than size if
// the file shrank. Reading no further than size bounds the work on a file
// that grows faster than we read; the fstat after reading flags it.
func (a *archiver) chunkFile(ctx context.Context, d *dirScan, fd int, size int64, ids *contentIDs) (int64, error) {
	if size == 0 {
		return 0, nil
	}
	if size <= int64(chunker.DefaultParams.Min) {
		return a.readSmallFile(ctx, d, fd, size, ids)
	}
	fc, err := a.chunker(fd, size)
	if err != nil {
		return 0, err
	}
	defer a.putChunker(fc)
	var total int64
	for idx := 0; ; idx++ {
		select {
		case a.tokens <- struct{}{}:
		case <-ctx.Done():
			return total, ctx.Err()
		}
		bp := a.getBuf()
		data, err := fc.c.Next((*bp)[:0])
		if err != nil {
			a.putBuf(bp)
			<-a.tokens
			if errors.Is(err, io.EOF) {
				return total, nil
			}
			return total, err
		}
		total += int64(len(data))
		if err := a.queue(ctx, d, bp, data, ids, idx); err != nil {
			return total, err
		}
	}
}

// readSmallFile reads a file no larger than the chunker's minimum chunk
// size, which the chunker would return whole, without a chunker.
func (a *archiver) readSmallFile(ctx context.Context, d *dirScan, fd int, size int64, ids *contentIDs) (int64, error) {
	select {
	case a.tokens <- struct{}{}:
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	bp := a.getBuf()
	if int64(cap(*bp)) < size {
		*bp = make([]byte, 0, max(size, 64<<10))
	}
	r := fileReader{fd: fd, size: size}
	data := (*bp)[:size]
	n, err := io.ReadFull(&r, data)
	if err == io.ErrUnexpectedEOF || (err == io.EOF && n == 0) {
		err = nil // shrank under us; the fstat after reading notices
	}
	if err != nil || n == 0 {
		a.putBuf(bp)
		<-a.tokens
		return 0, err
	}
	return int64(n), a.queue(ctx, d, bp, data[:n], ids, 0)
}

// queue hands chunk idx of a file to the storing workers; the caller holds
// a token for it.
func (a *archiver) queue(ctx context.Context, d *dirScan, bp *[]byte, data []byte, ids *contentIDs, idx int) error {
	d.chunks.Add(1)
	j := chunkJob{buf: bp, data: data, dst: ids, idx: idx, done: &d.chunks}
	select {
	case a.jobs <- j:
		return nil
	case <-ctx.Done():
		a.release(j)
		return ctx.Err()
	}
}

// fileChunker is a pooled chunker with the reader it is bound to.
type fileChunker struct {
	c *chunker.Chunker
	r fileReader
}

func (a *archiver) chunker(fd int, size int64) (*fileChunker, error) {
	select {
	case fc := <-a.chunkers:
		fc.r = fileReader{fd: fd, size: size}
		fc.c.Reset(&fc.r)
		return fc, nil
	default:
	}
	fc := &fileChunker{r: fileReader{fd: fd, size: size}}
	c, err := chunker.New(&fc.r, a.blobs.ChunkerKey(), chunker.DefaultParams)
	if err != nil {
		return nil, err
	}
	fc.c = c
	return fc, nil
}

func (a *archiver) putChunker(fc *fileChunker) {
	select {
	case a.chunkers <- fc:
	default:
	}
}

// fileReader reads an open file from offset 0 up to size bytes with
// pread, so a retry needs no seek.
type fileReader struct {
	fd   int
	off  int64
	size int64
}

func (r *fileReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	if rest := r.size - r.off; int64(len(p)) > rest {
		p = p[:rest]
	}
	for {
		n, err := unix.Pread(r.fd, p, r.off)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return 0, err
		}
		if n == 0 {
			return 0, io.EOF // shrank under us
		}
		r.off += int64(n)
		return n, nil
	}
}
