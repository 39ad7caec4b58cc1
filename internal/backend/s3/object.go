package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend"
)

// Get returns the whole object. The SDK checks the bytes against the
// object's stored SHA-256 checksum where the server returns one for the
// whole object (single-part uploads).
func (b *S3) Get(ctx context.Context, h backend.Handle) ([]byte, error) {
	if err := begin(ctx, h); err != nil {
		return nil, fmt.Errorf("get %s: %w", h, err)
	}
	return b.get(ctx, h, "")
}

// get reads the whole object h, or its version when version is not "".
func (b *S3) get(ctx context.Context, h backend.Handle, version string) ([]byte, error) {
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{
		Bucket:       &b.bucket,
		Key:          aws.String(b.key(h)),
		VersionId:    versionID(version),
		ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		return nil, b.opError("read", h, err)
	}
	defer out.Body.Close()
	var buf bytes.Buffer
	if n := aws.ToInt64(out.ContentLength); n > 0 {
		buf.Grow(int(n))
	}
	if _, err := buf.ReadFrom(out.Body); err != nil {
		return nil, b.opError("read", h, err)
	}
	return buf.Bytes(), nil
}

// GetRange returns length bytes at offset. A range past the end of the
// object is an error wrapping io.ErrUnexpectedEOF.
func (b *S3) GetRange(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	body, err := b.openRange(ctx, h, "", offset, length)
	if err != nil {
		return nil, err
	}
	defer body.Close()
	buf := make([]byte, length) // after openRange checked the size: a corrupt length cannot exhaust memory
	if err := b.readFull(h, body, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

// ReadRange is GetRange into the caller's buffer. It implements
// backend.RangeReader.
func (b *S3) ReadRange(ctx context.Context, h backend.Handle, offset int64, dst []byte) error {
	body, err := b.openRange(ctx, h, "", offset, int64(len(dst)))
	if err != nil {
		return err
	}
	defer body.Close()
	return b.readFull(h, body, dst)
}

func (b *S3) readFull(h backend.Handle, body io.Reader, buf []byte) error {
	if _, err := io.ReadFull(body, buf); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF // the object shrank under us; it should never
		}
		return b.opError("read", h, err)
	}
	return nil
}

// openRange returns the body of a ranged GET that holds length bytes of h
// (of its version, when version is not "") at offset, having checked
// against the object's size that it does.
func (b *S3) openRange(ctx context.Context, h backend.Handle, version string, offset, length int64) (io.ReadCloser, error) {
	if err := begin(ctx, h); err != nil {
		return nil, fmt.Errorf("get %s: %w", h, err)
	}
	if offset < 0 || length < 0 {
		return nil, fmt.Errorf("read %s: invalid range: offset %d, length %d", h, offset, length)
	}
	short := func(size string) error {
		return fmt.Errorf("read %s: bytes %d to %d requested, but the object has %s bytes: %w",
			b.url(h), offset, uint64(offset)+uint64(length), size, io.ErrUnexpectedEOF)
	}
	if length == 0 { // an HTTP range cannot be empty
		info, err := b.stat(ctx, h, version)
		if err != nil {
			return nil, err
		}
		if offset > info.Size {
			return nil, short(fmt.Sprintf("only %d", info.Size))
		}
		return io.NopCloser(strings.NewReader("")), nil
	}
	last := offset + length - 1
	if last < offset {
		last = math.MaxInt64 // overflow: far past the end of any object
	}
	out, err := b.client.GetObject(ctx, &s3api.GetObjectInput{
		Bucket:    &b.bucket,
		Key:       aws.String(b.key(h)),
		VersionId: versionID(version),
		Range:     aws.String(fmt.Sprintf("bytes=%d-%d", offset, last)),
	})
	if isInvalidRange(err) {
		return nil, short(fmt.Sprintf("fewer than %d", offset+1))
	}
	if err != nil {
		return nil, b.opError("read", h, err)
	}
	start, size, ok := parseContentRange(aws.ToString(out.ContentRange))
	if !ok { // the server ignored Range and sent the whole object
		start, size = 0, aws.ToInt64(out.ContentLength)
	}
	if offset > size || length > size-offset {
		out.Body.Close()
		return nil, short(fmt.Sprintf("only %d", size))
	}
	if start > offset {
		out.Body.Close()
		return nil, fmt.Errorf("read %s: the server sent bytes from %d for a read at %d", b.url(h), start, offset)
	}
	if _, err := io.CopyN(io.Discard, out.Body, offset-start); err != nil {
		out.Body.Close()
		return nil, b.opError("read", h, err)
	}
	return out.Body, nil
}

// versionID is the VersionId of a request for version: none for "", the
// current object.
func versionID(version string) *string {
	if version == "" {
		return nil
	}
	return aws.String(version)
}

// parseContentRange reads "bytes <first>-<last>/<size>".
func parseContentRange(s string) (first, size int64, ok bool) {
	var last int64
	if _, err := fmt.Sscanf(s, "bytes %d-%d/%d", &first, &last, &size); err != nil {
		return 0, 0, false
	}
	return first, size, first >= 0 && first <= last && last < size
}

// Stat reports the object's size and the server's time of its upload.
func (b *S3) Stat(ctx context.Context, h backend.Handle) (backend.Info, error) {
	if err := begin(ctx, h); err != nil {
		return backend.Info{}, fmt.Errorf("stat %s: %w", h, err)
	}
	return b.stat(ctx, h, "")
}

// stat is Stat of h, or of its version when version is not "".
func (b *S3) stat(ctx context.Context, h backend.Handle, version string) (backend.Info, error) {
	out, err := b.client.HeadObject(ctx, &s3api.HeadObjectInput{
		Bucket: &b.bucket, Key: aws.String(b.key(h)), VersionId: versionID(version),
	})
	if err != nil {
		return backend.Info{}, b.opError("stat", h, err)
	}
	return backend.Info{Handle: h, Size: aws.ToInt64(out.ContentLength), ModTime: aws.ToTime(out.LastModified)}, nil
}

// List calls fn for every object of kind, a page of up to 1,000 keys at a
// time. Keys that cannot be objects (other tools' files, folder markers) are
// skipped. An error from fn stops the listing and is returned as is.
func (b *S3) List(ctx context.Context, kind backend.Kind, fn func(backend.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	if err := backend.ValidateKind(kind); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	if kind.Singleton() {
		info, err := b.Stat(ctx, backend.Handle{Kind: kind})
		if errors.Is(err, backend.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return fn(info)
	}
	prefix := b.prefix + string(kind) + "/"
	pages := s3api.NewListObjectsV2Paginator(b.client, &s3api.ListObjectsV2Input{Bucket: &b.bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("list %s in %s: %s%w", kind, b.location, advice(err), err)
		}
		for _, obj := range page.Contents {
			h, ok := handleOf(kind, strings.TrimPrefix(aws.ToString(obj.Key), prefix))
			if !ok {
				continue
			}
			if err := fn(backend.Info{Handle: h, Size: aws.ToInt64(obj.Size), ModTime: aws.ToTime(obj.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// handleOf is the handle stored at rel below kind's folder, if any: the
// inverse of key.
func handleOf(kind backend.Kind, rel string) (backend.Handle, bool) {
	if kind == backend.Packs {
		dir, name, ok := strings.Cut(rel, "/")
		if !ok || len(dir) != 2 || !strings.HasPrefix(name, dir) {
			return backend.Handle{}, false
		}
		rel = name
	}
	h := backend.Handle{Kind: kind, Name: rel}
	return h, h.Validate() == nil
}

// Delete removes the object; a missing object is an error wrapping
// backend.ErrNotFound. S3 deletes succeed whether or not the key exists, so
// this asks first: two concurrent Deletes of one object may then both
// succeed. In a versioned bucket the delete only hides the object behind a
// delete marker; its versions stay until the bucket's lifecycle rules (and
// Object Lock) let them go.
func (b *S3) Delete(ctx context.Context, h backend.Handle) error {
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("delete %s: %w", h, err)
	}
	key := aws.String(b.key(h))
	if _, err := b.client.HeadObject(ctx, &s3api.HeadObjectInput{Bucket: &b.bucket, Key: key}); err != nil {
		return b.opError("delete", h, err)
	}
	if _, err := b.client.DeleteObject(ctx, &s3api.DeleteObjectInput{Bucket: &b.bucket, Key: key}); err != nil {
		return b.opError("delete", h, err)
	}
	return nil
}
