package s3test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
)

// ulidTime is the time a ULID records in its first ten characters:
// milliseconds since 1970 in Crockford's base32.
func ulidTime(id string) (time.Time, bool) {
	const alphabet = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
	if len(id) != 26 {
		return time.Time{}, false
	}
	var ms int64
	for _, c := range id[:10] {
		i := strings.IndexRune(alphabet, c)
		if i < 0 {
			return time.Time{}, false
		}
		ms = ms<<5 | int64(i)
	}
	return time.UnixMilli(ms), true
}

// FixVersionTimes works around two bugs of versitygw v1.8.0 that make
// LastModified wrong for all but the current versions of a key:
//   - a version that is overwritten or deleted is copied into the versions
//     folder then, and reports that time, not when it was written
//     (versity/versitygw#2311, fixed by #2383 after v1.8.0);
//   - a delete marker is the deleted object's file with an attribute set,
//     and reports when the deleted object was written.
//
// It sets each stored version's file time to when it was written, which
// versitygw's version ids (ULIDs) record to the millisecond. Remove it once
// tools/s3 pins a versitygw without these bugs.
func (srv *Server) FixVersionTimes(t testing.TB, bucket string) {
	t.Helper()
	if srv.Kind != "versitygw" {
		return
	}
	dir := filepath.Join(filepath.Dir(srv.DataDir), "versions", bucket)
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		if written, ok := ulidTime(d.Name()); ok {
			return os.Chtimes(path, written, written)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("restore versitygw's version times (has s3test's layout changed?): %v", err)
	}
	pages := s3api.NewListObjectVersionsPaginator(srv.Client(t), &s3api.ListObjectVersionsInput{Bucket: &bucket})
	for pages.HasMorePages() {
		page, err := pages.NextPage(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range page.DeleteMarkers {
			written, ok := ulidTime(aws.ToString(m.VersionId))
			if !aws.ToBool(m.IsLatest) || !ok {
				continue
			}
			path := filepath.Join(srv.DataDir, bucket, filepath.FromSlash(aws.ToString(m.Key)))
			if err := os.Chtimes(path, written, written); err != nil {
				t.Fatalf("restore the time of versitygw's delete marker: %v", err)
			}
		}
	}
}
