package s3

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/custodyhq/custody/internal/backend"
)

// ErrReadOnly is wrapped by the errors of AsOf's Put and Delete. It is also
// backend.ErrReadOnly, for callers that do not know about S3.
var ErrReadOnly error = readOnly{}

type readOnly struct{}

func (readOnly) Error() string        { return "point-in-time view is read-only" }
func (readOnly) Is(target error) bool { return target == backend.ErrReadOnly }

// AsOf is a read-only backend.Backend showing the vault as the bucket held
// it at one instant: for each key the newest object version written at or
// before that time, unless that is a delete marker. A vault whose objects
// were deleted or overwritten later is read exactly as it was.
//
// Times are compared to the second, the resolution S3 reports: an object
// written in the same second as the instant counts as written by then.
// The view relies on each version's LastModified being the time it was
// written, as on AWS. versitygw v1.8.0 breaks that: a version overwritten
// or deleted reports the time it was superseded (versity/versitygw#2311),
// and a delete marker the time the deleted object was written, so the
// view there misses objects that were later overwritten or deleted.
//
// The view is built once, by AsOf; reads fetch the chosen versions, so a
// version deleted for good since then is missing (ErrNotFound). It is safe
// for concurrent use.
type AsOf struct {
	s3       *S3
	at       time.Time // the instant, whole seconds
	location string
	objects  map[backend.Handle]chosen
	oldest   time.Time // of any vault object version in the bucket; zero if none
}

// chosen is the version of one object the view shows.
type chosen struct {
	version string
	size    int64
	modTime time.Time
}

var (
	_ backend.Backend     = (*AsOf)(nil)
	_ backend.RangeReader = (*AsOf)(nil)
)

// AsOf returns the vault as the bucket held it at t, from the bucket's
// object versions. The bucket must be versioned (or have been, and now be
// suspended): only then does it keep what was overwritten or deleted.
func (b *S3) AsOf(ctx context.Context, t time.Time) (*AsOf, error) {
	return b.asOf(ctx, t, 0)
}

// asOf is AsOf listing pageSize versions per request, or the server's
// default (1,000) for 0.
func (b *S3) asOf(ctx context.Context, t time.Time, pageSize int32) (*AsOf, error) {
	at := t.UTC().Truncate(time.Second)
	where := "s3://" + b.bucket
	if b.prefix != "" {
		where += "/" + strings.TrimSuffix(b.prefix, "/")
	}
	a := &AsOf{
		s3:       b,
		at:       at,
		location: where + " as of " + at.Format(time.RFC3339) + b.endpoint,
		objects:  make(map[backend.Handle]chosen),
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("open %s: %w", a.location, err)
	}
	v, err := b.client.GetBucketVersioning(ctx, &s3api.GetBucketVersioningInput{Bucket: &b.bucket})
	if err != nil {
		return nil, fmt.Errorf("open %s: read the bucket's versioning: %s%w", a.location, advice(err), err)
	}
	switch v.Status {
	case types.BucketVersioningStatusEnabled, types.BucketVersioningStatusSuspended:
	default:
		return nil, fmt.Errorf("open %s: the bucket %s is not versioned, so it kept nothing that was overwritten or deleted; point-in-time restore needs versioning: enable it on the bucket (with Object Lock for offsite copies), and restore the vault as it is now", a.location, b.bucket)
	}
	if err := a.load(ctx, pageSize); err != nil {
		return nil, fmt.Errorf("open %s: list object versions: %s%w", a.location, advice(err), err)
	}
	return a, nil
}

// candidate is one version or delete marker of a key, at or before the
// view's instant.
type candidate struct {
	chosen
	latest bool
	marker bool
	second time.Time // modTime to the second
	seq    int       // position in its list: S3 lists a key's versions newest first
}

// newer reports whether c is a newer state of its key than d. The latest
// version is the newest; otherwise the later second, then the earlier in
// S3's newest-first listing. S3 lists versions and delete markers apart, so
// a version and a delete marker of the same second, neither the latest,
// cannot be ordered; the version is taken as the newer, as a restore would
// rather find bytes it can verify than miss them.
func (c candidate) newer(d candidate) bool {
	switch {
	case c.latest != d.latest:
		return c.latest
	case !c.second.Equal(d.second):
		return c.second.After(d.second)
	case c.marker == d.marker:
		return c.seq < d.seq
	}
	return !c.marker
}

// load lists every version and delete marker under the prefix and keeps,
// per vault object, the newest at or before a.at.
func (a *AsOf) load(ctx context.Context, pageSize int32) error {
	b := a.s3
	in := &s3api.ListObjectVersionsInput{Bucket: &b.bucket, Prefix: aws.String(b.prefix)}
	if pageSize > 0 {
		in.MaxKeys = aws.Int32(pageSize)
	}
	best := make(map[backend.Handle]candidate)
	seq := 0
	consider := func(key *string, c candidate) {
		seq++
		h, ok := b.HandleOfKey(aws.ToString(key))
		if !ok {
			return
		}
		if !c.marker && (a.oldest.IsZero() || c.modTime.Before(a.oldest)) {
			a.oldest = c.modTime
		}
		c.second = c.modTime.UTC().Truncate(time.Second)
		c.seq = seq
		if c.second.After(a.at) {
			return
		}
		if prev, ok := best[h]; !ok || c.newer(prev) {
			best[h] = c
		}
	}
	pages := s3api.NewListObjectVersionsPaginator(b.client, in)
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return err
		}
		for _, v := range page.Versions {
			consider(v.Key, candidate{
				chosen: chosen{version: aws.ToString(v.VersionId), size: aws.ToInt64(v.Size), modTime: aws.ToTime(v.LastModified)},
				latest: aws.ToBool(v.IsLatest),
			})
		}
		for _, m := range page.DeleteMarkers {
			consider(m.Key, candidate{
				chosen: chosen{version: aws.ToString(m.VersionId), modTime: aws.ToTime(m.LastModified)},
				latest: aws.ToBool(m.IsLatest),
				marker: true,
			})
		}
	}
	for h, c := range best {
		if !c.marker {
			a.objects[h] = c.chosen
		}
	}
	return nil
}

// Location names the bucket and prefix, the instant, and the endpoint if
// not AWS.
func (a *AsOf) Location() string { return a.location }

// Close releases nothing. It implements backend.Backend.
func (a *AsOf) Close() error { return nil }

// lookup checks ctx and h and returns the version of h the view shows.
func (a *AsOf) lookup(ctx context.Context, op string, h backend.Handle) (chosen, error) {
	if err := begin(ctx, h); err != nil {
		return chosen{}, fmt.Errorf("%s %s: %w", op, h, err)
	}
	c, ok := a.objects[h]
	if !ok {
		return chosen{}, a.notFound(op, h)
	}
	return c, nil
}

func (a *AsOf) notFound(op string, h backend.Handle) error {
	stamp := a.at.Format(time.RFC3339)
	var why string
	switch {
	case a.oldest.IsZero():
		why = "the bucket holds no version of any vault object under this prefix"
	case len(a.objects) == 0 && a.oldest.After(a.at):
		why = fmt.Sprintf("nothing existed in the vault at that time; its oldest object is from %s, so choose a later time",
			a.oldest.UTC().Format(time.RFC3339))
	default:
		why = "it did not exist at that time"
	}
	return fmt.Errorf("%s %s as of %s: %w: %s", op, a.s3.url(h), stamp, backend.ErrNotFound, why)
}

// wrap adds the instant to an error from reading a version.
func (a *AsOf) wrap(err error) error {
	return fmt.Errorf("as of %s: %w", a.at.Format(time.RFC3339), err)
}

// Get returns the whole object as it was, checked against its stored
// SHA-256 like S3.Get.
func (a *AsOf) Get(ctx context.Context, h backend.Handle) ([]byte, error) {
	c, err := a.lookup(ctx, "get", h)
	if err != nil {
		return nil, err
	}
	data, err := a.s3.get(ctx, h, c.version)
	if err != nil {
		return nil, a.wrap(err)
	}
	return data, nil
}

// GetRange returns length bytes at offset of the object as it was. A range
// past its end is an error wrapping io.ErrUnexpectedEOF.
func (a *AsOf) GetRange(ctx context.Context, h backend.Handle, offset, length int64) ([]byte, error) {
	c, err := a.lookup(ctx, "get", h)
	if err != nil {
		return nil, err
	}
	body, err := a.s3.openRange(ctx, h, c.version, offset, length)
	if err != nil {
		return nil, a.wrap(err)
	}
	defer body.Close()
	buf := make([]byte, length) // after openRange checked the size
	if err := a.s3.readFull(h, body, buf); err != nil {
		return nil, a.wrap(err)
	}
	return buf, nil
}

// ReadRange is GetRange into the caller's buffer. It implements
// backend.RangeReader.
func (a *AsOf) ReadRange(ctx context.Context, h backend.Handle, offset int64, dst []byte) error {
	c, err := a.lookup(ctx, "get", h)
	if err != nil {
		return err
	}
	body, err := a.s3.openRange(ctx, h, c.version, offset, int64(len(dst)))
	if err != nil {
		return a.wrap(err)
	}
	defer body.Close()
	if err := a.s3.readFull(h, body, dst); err != nil {
		return a.wrap(err)
	}
	return nil
}

// Stat reports the size and upload time of the version the view shows,
// asking the server, so a version deleted since the view was built is
// missing.
func (a *AsOf) Stat(ctx context.Context, h backend.Handle) (backend.Info, error) {
	c, err := a.lookup(ctx, "stat", h)
	if err != nil {
		return backend.Info{}, err
	}
	info, err := a.s3.stat(ctx, h, c.version)
	if err != nil {
		return backend.Info{}, a.wrap(err)
	}
	return info, nil
}

// List calls fn for every object of kind in the view, in name order, from
// what AsOf listed. An error from fn stops the listing and is returned as is.
func (a *AsOf) List(ctx context.Context, kind backend.Kind, fn func(backend.Info) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	if err := backend.ValidateKind(kind); err != nil {
		return fmt.Errorf("list %s: %w", kind, err)
	}
	var infos []backend.Info
	for h, c := range a.objects {
		if h.Kind == kind {
			infos = append(infos, backend.Info{Handle: h, Size: c.size, ModTime: c.modTime})
		}
	}
	slices.SortFunc(infos, func(x, y backend.Info) int { return strings.Compare(x.Handle.Name, y.Handle.Name) })
	for _, info := range infos {
		if err := fn(info); err != nil {
			return err
		}
	}
	return nil
}

// Put refuses: the past cannot be written. The error wraps ErrReadOnly.
func (a *AsOf) Put(ctx context.Context, h backend.Handle, data []byte) error {
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("put %s: %w", h, err)
	}
	return fmt.Errorf("put %s in %s: %w; restore from it into a writable vault instead", h, a.location, ErrReadOnly)
}

// Delete refuses: the past cannot be changed. The error wraps ErrReadOnly.
func (a *AsOf) Delete(ctx context.Context, h backend.Handle) error {
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("delete %s: %w", h, err)
	}
	return fmt.Errorf("delete %s in %s: %w", h, a.location, ErrReadOnly)
}
