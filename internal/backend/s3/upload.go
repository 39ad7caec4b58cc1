package s3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/backend"
)

// Put stores data under h unless an object of that name exists. The write
// is conditional on the server, so of concurrent writers exactly one wins.
// A Put whose reply was lost and that the SDK retried can find its own
// object there and return ErrExists; for content-named objects that is the
// same outcome.
func (b *S3) Put(ctx context.Context, h backend.Handle, data []byte) error {
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("put %s: %w", h, err)
	}
	_, err := b.upload(ctx, h, bytes.NewReader(data), int64(len(data)), Retention{})
	return err
}

// upload stores size bytes of r as h, write-once, in one request or, when
// larger than a part, as a multipart upload. r is read with ReadAt only, so
// parts and retries can read it concurrently and again.
func (b *S3) upload(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64, ret Retention) (Written, error) {
	var w Written
	var err error
	if size <= b.partSize {
		w, err = b.putObject(ctx, h, r, size, ret)
	} else {
		w, err = b.putMultipart(ctx, h, r, size, ret)
	}
	switch {
	case err == nil:
		w.Size = size
		return w, nil
	case isPreconditionFailed(err), httpStatus(err) == 0 && b.landed(ctx, h):
		return Written{}, fmt.Errorf("store %s: %w", b.url(h), backend.ErrExists)
	case apiCode(err) == "NotImplemented":
		return Written{}, fmt.Errorf("store %s: the server does not support conditional writes (If-None-Match), which custody needs to keep objects write-once; use a server that does (AWS S3, versitygw, MinIO): %w", b.url(h), err)
	}
	return Written{}, fmt.Errorf("store %s: %s%w", b.url(h), advice(err), err)
}

// landed reports whether h is in the bucket after a write that got no
// answer. A server that refuses a conditional write (412) before reading a
// large body may close the connection on the rest of it (versitygw and
// net/http drain at most 256 KiB): the client then sees a reset, never the
// 412, and every retry the same. The object being there is the answer,
// whoever wrote it: for content-named objects the outcome is the same.
func (b *S3) landed(ctx context.Context, h backend.Handle) bool {
	if ctx.Err() != nil {
		return false
	}
	_, err := b.Stat(ctx, h)
	return err == nil
}

// sha256Of returns the base64 SHA-256 of r's bytes, as S3 headers want it.
func sha256Of(r io.Reader) (string, error) {
	sum := sha256.New()
	if _, err := io.Copy(sum, r); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(sum.Sum(nil)), nil
}

func (b *S3) putObject(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64, ret Retention) (Written, error) {
	sum, err := sha256Of(io.NewSectionReader(r, 0, size))
	if err != nil {
		return Written{}, fmt.Errorf("read the data: %w", err)
	}
	in := &s3api.PutObjectInput{
		Bucket:            &b.bucket,
		Key:               aws.String(b.key(h)),
		Body:              io.NewSectionReader(r, 0, size), // seekable, so the SDK can retry it
		ContentLength:     aws.Int64(size),
		IfNoneMatch:       aws.String("*"),
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
		ChecksumSHA256:    aws.String(sum),
	}
	if ret.Mode != "" {
		in.ObjectLockMode, in.ObjectLockRetainUntilDate = ret.Mode, aws.Time(ret.Until)
	}
	if ret.LegalHold {
		in.ObjectLockLegalHoldStatus = types.ObjectLockLegalHoldStatusOn
	}
	out, err := b.client.PutObject(ctx, in)
	if err != nil {
		return Written{}, err
	}
	return Written{VersionID: aws.ToString(out.VersionId), SHA256: sum}, nil
}

// putMultipart uploads r in parts of b.partSize, uploadConcurrency at a
// time, each with its SHA-256, and completes the upload only if the key is
// still free. On any failure it aborts the upload, so no parts linger (a
// crash still can leave some: give the bucket a lifecycle rule that aborts
// incomplete multipart uploads after a day).
func (b *S3) putMultipart(ctx context.Context, h backend.Handle, r io.ReaderAt, size int64, ret Retention) (_ Written, err error) {
	key := aws.String(b.key(h))
	in := &s3api.CreateMultipartUploadInput{
		Bucket:            &b.bucket,
		Key:               key,
		ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
	}
	if ret.Mode != "" {
		in.ObjectLockMode, in.ObjectLockRetainUntilDate = ret.Mode, aws.Time(ret.Until)
	}
	if ret.LegalHold {
		in.ObjectLockLegalHoldStatus = types.ObjectLockLegalHoldStatusOn
	}
	created, err := b.client.CreateMultipartUpload(ctx, in)
	if err != nil {
		return Written{}, err
	}
	defer func() {
		if err != nil {
			// Also after ctx is cancelled: the abort cleans up after it.
			actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			_, _ = b.client.AbortMultipartUpload(actx, &s3api.AbortMultipartUploadInput{
				Bucket: &b.bucket, Key: key, UploadId: created.UploadId,
			})
		}
	}()

	parts := make([]types.CompletedPart, (size+b.partSize-1)/b.partSize)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(uploadConcurrency)
	for i := range parts {
		g.Go(func() error {
			off := int64(i) * b.partSize
			n := min(b.partSize, size-off)
			sum, err := sha256Of(io.NewSectionReader(r, off, n))
			if err != nil {
				return fmt.Errorf("read the data: %w", err)
			}
			num := aws.Int32(int32(i + 1))
			out, err := b.client.UploadPart(gctx, &s3api.UploadPartInput{
				Bucket:            &b.bucket,
				Key:               key,
				UploadId:          created.UploadId,
				PartNumber:        num,
				Body:              io.NewSectionReader(r, off, n),
				ContentLength:     aws.Int64(n),
				ChecksumAlgorithm: types.ChecksumAlgorithmSha256,
				ChecksumSHA256:    aws.String(sum),
			})
			if err != nil {
				return fmt.Errorf("upload part %d of %d: %w", i+1, len(parts), err)
			}
			parts[i] = types.CompletedPart{ETag: out.ETag, PartNumber: num, ChecksumSHA256: aws.String(sum)}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return Written{}, err
	}
	out, err := b.client.CompleteMultipartUpload(ctx, &s3api.CompleteMultipartUploadInput{
		Bucket:          &b.bucket,
		Key:             key,
		UploadId:        created.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		IfNoneMatch:     aws.String("*"),
	})
	if err != nil {
		return Written{}, err
	}
	return Written{VersionID: aws.ToString(out.VersionId), SHA256: aws.ToString(out.ChecksumSHA256)}, nil
}

// CreateTemp returns a new, empty file in the system's temporary folder
// for the caller to fill and then hand to PutFile or DiscardTemp. It
// implements backend.FilePutter: a pack is uploaded from the file in
// parts, so memory does not grow with its size.
func (b *S3) CreateTemp() (*os.File, error) {
	f, err := os.CreateTemp("", "custody-s3-*")
	if err != nil {
		return nil, fmt.Errorf("%s: create a temporary file: %w", b.location, err)
	}
	b.mu.Lock()
	b.temps[f] = true
	b.mu.Unlock()
	return f, nil
}

// claim forgets f as an outstanding temporary file, reporting whether it
// was one.
func (b *S3) claim(f *os.File) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	ok := b.temps[f]
	delete(b.temps, f)
	return ok
}

// PutFile uploads the file f, which came from CreateTemp and holds the
// whole object, as h, with the same write-once rules as Put. f is closed
// and removed whatever happens.
func (b *S3) PutFile(ctx context.Context, h backend.Handle, f *os.File) error {
	if !b.claim(f) {
		_ = f.Close()
		return fmt.Errorf("store %s: the file %s was not created by this backend's CreateTemp, or was already put", b.url(h), f.Name())
	}
	defer discard(f)
	if err := begin(ctx, h); err != nil {
		return fmt.Errorf("put %s: %w", h, err)
	}
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("store %s: %w", b.url(h), err)
	}
	_, err = b.upload(ctx, h, f, fi.Size(), Retention{})
	return err
}

// DiscardTemp closes and removes a file from CreateTemp that will not be put.
func (b *S3) DiscardTemp(f *os.File) {
	if b.claim(f) {
		discard(f)
	} else {
		_ = f.Close()
	}
}

func discard(f *os.File) {
	_ = f.Close()
	if err := os.Remove(f.Name()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return // best effort: it is in the temporary folder, which the system cleans
	}
}
