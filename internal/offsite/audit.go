package offsite

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/aws/aws-sdk-go-v2/aws"
	s3api "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"golang.org/x/sync/errgroup"

	"github.com/custodyhq/custody/internal/backend"
	"github.com/custodyhq/custody/internal/backend/s3"
	"github.com/custodyhq/custody/internal/catalog"
)

// Kinds of audit finding. All but Unexpected mean the bucket no longer
// holds what was pushed, or no longer protects it as it did.
const (
	// Missing: a recorded object has no version left, only delete markers
	// or nothing at all; it was deleted for good.
	Missing = "missing"
	// Overwritten: a write-once key has versions besides the recorded one,
	// or the recorded version's size or checksum differs from the push.
	Overwritten = "overwritten"
	// DeletedVersion: the recorded version is gone while others remain.
	DeletedVersion = "deleted-version"
	// DeleteMarker: a delete marker is the key's current version, so reads
	// fail although the recorded version is still there.
	DeleteMarker = "delete-marker"
	// Unlocked: the offsite has a lock or the record a retention, and the
	// version's retention is missing, in a weaker mode, or ends before the
	// recorded date; or its recorded legal hold is off.
	Unlocked = "unlocked"
	// VersioningSuspended: versioning is no longer enabled, so overwrites
	// and deletes destroy data instead of keeping old versions.
	VersioningSuspended = "versioning-suspended"
	// LifecycleChanged, PolicyChanged, ObjectLockChanged: the bucket's
	// lifecycle rules, policy or Object Lock configuration differ from the
	// baseline taken when the offsite was added.
	LifecycleChanged  = "lifecycle-changed"
	PolicyChanged     = "policy-changed"
	ObjectLockChanged = "object-lock-changed"
	// CustomerKeyEncrypted: a version can only be read with a
	// customer-provided key (SSE-C): someone re-encrypted it with a key
	// only they hold, the ransomware attack known as Codefinger.
	CustomerKeyEncrypted = "customer-key-encrypted"
	// Unexpected: a key shaped like a vault object that the catalog has no
	// record of. Informational: another host may have pushed it, or a push
	// is still running.
	Unexpected = "unexpected"
)

// Finding is one thing an audit found wrong.
type Finding struct {
	Kind   string
	Key    string // the object's handle ("data/ab12..."), "" for the bucket
	Detail string // what was expected, what was found, in plain words
}

// Report is the outcome of one audit.
type Report struct {
	Offsite  string
	Checked  int       // recorded objects compared with the bucket
	Findings []Finding // by kind, then key
	Started  time.Time
	Finished time.Time
}

// Tampered reports whether the audit found anything but Unexpected keys.
func (r Report) Tampered() bool {
	return slices.ContainsFunc(r.Findings, func(f Finding) bool { return f.Kind != Unexpected })
}

// auditConcurrency bounds the per-object requests in flight.
const auditConcurrency = 8

// Audit compares the offsite's bucket with what the catalog says was pushed
// and with the baseline taken when it was added: every recorded version
// must be there, alone under its key, current, readable without a
// customer key, and as locked as recorded; the bucket's versioning, Object
// Lock configuration, policy and lifecycle rules must be unchanged. It
// lists the bucket's versions once and sends one HEAD per recorded object,
// plus retention and legal hold requests where the HEAD does not show
// enough.
func Audit(ctx context.Context, t *Target, db *catalog.DB) (Report, error) {
	r := Report{Offsite: t.Rec.Name, Started: time.Now()}
	var found findings
	bucketFindings, err := auditBucket(ctx, t)
	if err != nil {
		return Report{}, err
	}
	found.add(bucketFindings...)
	hists, err := listHistories(ctx, t.S3)
	if err != nil {
		return Report{}, fmt.Errorf("offsite %s: %w", t.Rec.Name, err)
	}

	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(auditConcurrency)
	err = db.OffsiteObjects(ctx, t.Rec.Name, func(rec catalog.OffsiteObject) error {
		if err := gctx.Err(); err != nil {
			return err // a check failed; g.Wait says why
		}
		h, err := backend.ParseHandle(rec.Key)
		if err != nil {
			return fmt.Errorf("offsite %s: catalog record: %w", t.Rec.Name, err)
		}
		r.Checked++
		hist := hists[h.String()]
		if hist != nil {
			hist.recorded = true
		}
		fs, recorded, other := compareHistory(rec, hist)
		found.add(fs...)
		key := t.S3.Key(h)
		if recorded != nil {
			g.Go(func() error {
				fs, err := checkVersion(gctx, t, key, rec, *recorded, true)
				found.add(fs...)
				return err
			})
		}
		if other != nil {
			g.Go(func() error {
				fs, err := checkVersion(gctx, t, key, rec, *other, false)
				found.add(fs...)
				return err
			})
		}
		return nil
	})
	if werr := g.Wait(); werr != nil {
		return Report{}, fmt.Errorf("offsite %s: audit: %w", t.Rec.Name, werr)
	}
	if err != nil {
		return Report{}, err
	}
	for hkey, hist := range hists {
		// Delete markers alone are what is left of an object the catalog
		// forgot after an audit found it missing.
		live := slices.ContainsFunc(hist.versions, func(v objectVersion) bool { return !v.Marker })
		if !hist.recorded && live {
			found.add(unexpected(hkey, hist))
		}
	}
	r.Findings = found.sorted()
	r.Finished = time.Now()
	return r, nil
}

// findings collects findings from concurrent checks.
type findings struct {
	mu  sync.Mutex
	all []Finding
}

func (f *findings) add(fs ...Finding) {
	f.mu.Lock()
	f.all = append(f.all, fs...)
	f.mu.Unlock()
}

// sorted returns the findings by kind and key, those of the same kind and
// key merged into one.
func (f *findings) sorted() []Finding {
	all := f.all
	slices.SortFunc(all, func(a, b Finding) int {
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Key, b.Key), cmp.Compare(a.Detail, b.Detail))
	})
	var out []Finding
	for _, x := range all {
		if n := len(out); n > 0 && out[n-1].Kind == x.Kind && out[n-1].Key == x.Key {
			out[n-1].Detail += "; " + x.Detail
			continue
		}
		out = append(out, x)
	}
	return out
}

// objectVersion is one entry of a key's history in the bucket.
type objectVersion struct {
	ID       string // "null" (or "") for an object written while unversioned
	Marker   bool   // a delete marker, not an object
	Latest   bool
	Size     int64
	Modified time.Time
}

// history is what the bucket holds under one vault object's key.
type history struct {
	versions []objectVersion // current first, then newest first
	recorded bool            // the catalog has a record of the key
}

// listHistories lists every version and delete marker under the vault's
// prefix, by handle string; keys that are not vault objects are skipped.
func listHistories(ctx context.Context, b *s3.S3) (map[string]*history, error) {
	hists := make(map[string]*history)
	note := func(key *string, v objectVersion) {
		h, ok := b.HandleOfKey(aws.ToString(key))
		if !ok {
			return
		}
		hist := hists[h.String()]
		if hist == nil {
			hist = &history{}
			hists[h.String()] = hist
		}
		hist.versions = append(hist.versions, v)
	}
	bucket, prefix := b.Bucket(), b.Prefix()
	pages := s3api.NewListObjectVersionsPaginator(b.Client(), &s3api.ListObjectVersionsInput{Bucket: &bucket, Prefix: &prefix})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list the versions in s3://%s/%s: %w", bucket, prefix, err)
		}
		for _, v := range page.Versions {
			note(v.Key, objectVersion{ID: aws.ToString(v.VersionId), Latest: aws.ToBool(v.IsLatest),
				Size: aws.ToInt64(v.Size), Modified: aws.ToTime(v.LastModified)})
		}
		for _, m := range page.DeleteMarkers {
			note(m.Key, objectVersion{ID: aws.ToString(m.VersionId), Marker: true, Latest: aws.ToBool(m.IsLatest),
				Modified: aws.ToTime(m.LastModified)})
		}
	}
	for _, hist := range hists {
		slices.SortStableFunc(hist.versions, func(a, b objectVersion) int {
			if a.Latest != b.Latest {
				if a.Latest {
					return -1
				}
				return 1
			}
			return b.Modified.Compare(a.Modified)
		})
	}
	return hists, nil
}

// isRecorded reports whether v is the version rec names. A record without
// a version id was pushed to an unversioned bucket, where S3 calls the
// only version "null".
func isRecorded(rec catalog.OffsiteObject, v objectVersion) bool {
	if v.Marker {
		return false
	}
	if rec.VersionID == "" {
		return v.ID == "" || v.ID == "null"
	}
	return v.ID == rec.VersionID
}

// compareHistory judges a recorded object by its key's history in the
// bucket (nil: nothing under the key). It returns the findings, the
// recorded version if it is still there, and the current version if that
// is another object version, for checkVersion to look at.
func compareHistory(rec catalog.OffsiteObject, hist *history) (fs []Finding, recorded, other *objectVersion) {
	add := func(kind, format string, args ...any) {
		fs = append(fs, Finding{Kind: kind, Key: rec.Key, Detail: fmt.Sprintf(format, args...)})
	}
	was := fmt.Sprintf("the recorded version %s (pushed %s)", versionName(rec.VersionID), when(rec.PushedAt))
	var objects, markers []objectVersion
	if hist != nil {
		for _, v := range hist.versions {
			if v.Marker {
				markers = append(markers, v)
			} else {
				objects = append(objects, v)
			}
		}
	}
	if len(objects) == 0 {
		left := "nothing is left under its key"
		if len(markers) > 0 {
			left = fmt.Sprintf("only %d delete marker(s) are left under its key", len(markers))
		}
		add(Missing, "%s is gone and %s: the object was deleted for good; push again to restore the copy, and find out who could delete versions", was, left)
		return fs, nil, nil
	}
	current := hist.versions[0]
	for i, v := range objects {
		if isRecorded(rec, v) {
			recorded = &objects[i]
		}
	}
	if !current.Marker && (recorded == nil || current.ID != recorded.ID) {
		other = &current
	}
	if recorded == nil {
		hidden := ""
		if current.Marker {
			hidden = ", and a delete marker hides the key"
		}
		add(DeletedVersion, "%s no longer exists; the key holds %d other version(s) (%s)%s: someone deleted the version that was pushed", was, len(objects), describeVersions(objects, 3), hidden)
		return fs, nil, other
	}
	if recorded.Size != rec.Size {
		add(Overwritten, "%s has %d bytes in the bucket, %d when pushed", was, recorded.Size, rec.Size)
	}
	var extra []objectVersion
	for _, v := range objects {
		if v.ID != recorded.ID {
			extra = append(extra, v)
		}
	}
	if len(extra) > 0 {
		add(Overwritten, "the key should hold only %s but also holds %d other version(s) (%s): someone wrote over a write-once object", was, len(extra), describeVersions(extra, 3))
	}
	if current.Marker {
		add(DeleteMarker, "a delete marker (version %s, %s) hides %s, so reads of the key fail; delete the marker (that version id) to make the object current again", current.ID, when(current.Modified), was)
	}
	return fs, recorded, other
}

// checkVersion asks the bucket about one version of a recorded object: is
// it readable without a customer key, is its content the one pushed, and,
// for the recorded version (recorded true), is it locked as recorded.
func checkVersion(ctx context.Context, t *Target, key string, rec catalog.OffsiteObject, v objectVersion, recorded bool) ([]Finding, error) {
	var fs []Finding
	add := func(kind, format string, args ...any) {
		fs = append(fs, Finding{Kind: kind, Key: rec.Key, Detail: fmt.Sprintf(format, args...)})
	}
	c, bucket := t.S3.Client(), t.S3.Bucket()
	in := &s3api.HeadObjectInput{Bucket: &bucket, Key: &key, ChecksumMode: types.ChecksumModeEnabled}
	if v.ID != "" && !(v.ID == "null" && v.Latest) {
		in.VersionId = aws.String(v.ID)
	}
	role := "the current version " + versionName(v.ID)
	if recorded {
		role = "the recorded version " + versionName(v.ID)
	}
	head, err := c.HeadObject(ctx, in)
	switch {
	case err == nil && aws.ToString(head.SSECustomerAlgorithm) != "":
		add(CustomerKeyEncrypted, "%s is encrypted with a customer-provided key (SSE-C, %s): only whoever holds that key can read it; this is how the Codefinger ransomware takes buckets hostage", role, aws.ToString(head.SSECustomerAlgorithm))
	case err == nil:
	case s3.IsNotFound(err):
		if recorded {
			add(DeletedVersion, "%s was deleted while the audit ran", role)
		}
		return fs, nil
	case httpStatus(err) == http.StatusBadRequest:
		// HEAD has no body to say why; AWS answers 400 to a HEAD of an
		// SSE-C object without its key, and GET explains.
		why, cerr := customerKeyNeeded(ctx, c, in)
		if cerr != nil {
			return nil, fmt.Errorf("head %s: %w (and get: %w)", key, err, cerr)
		}
		if why == "" {
			return nil, fmt.Errorf("head %s: %w", key, err)
		}
		add(CustomerKeyEncrypted, "%s cannot be read without a customer-provided key (SSE-C; the server says: %s): someone re-encrypted it with a key only they hold, as the Codefinger ransomware does", role, why)
		head = nil
	default:
		return nil, fmt.Errorf("head %s: %w", key, err)
	}
	if !recorded {
		return fs, nil
	}
	if head != nil {
		if got := aws.ToString(head.ChecksumSHA256); comparableSum(got) && comparableSum(rec.SHA256) && got != rec.SHA256 {
			add(Overwritten, "%s has SHA-256 %s in the bucket, %s when pushed: its content was replaced", role, got, rec.SHA256)
		}
	}
	if t.Rec.LockMode == "" && rec.RetainUntil.IsZero() && !rec.LegalHold {
		return fs, nil
	}
	lock, err := lockOf(ctx, t, in, head, rec.LegalHold)
	if err != nil {
		return nil, err
	}
	for _, p := range lockProblems(t.Rec.LockMode, rec, lock, time.Now()) {
		add(Unlocked, "%s %s", role, p)
	}
	return fs, nil
}

// customerKeyNeeded asks for the first byte of the object HEAD refused and
// returns the server's reason if it is a customer-provided key, "" if the
// refusal is about something else.
func customerKeyNeeded(ctx context.Context, c *s3api.Client, head *s3api.HeadObjectInput) (string, error) {
	out, err := c.GetObject(ctx, &s3api.GetObjectInput{Bucket: head.Bucket, Key: head.Key, VersionId: head.VersionId, Range: aws.String("bytes=0-0")})
	if err == nil {
		out.Body.Close()
		if alg := aws.ToString(out.SSECustomerAlgorithm); alg != "" {
			return "encrypted with " + alg, nil
		}
		return "", nil
	}
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) && strings.Contains(strings.ToLower(apiErr.ErrorMessage()), "encrypt") {
		return apiErr.ErrorMessage(), nil
	}
	return "", err
}

// comparableSum reports whether sum is a whole-object SHA-256 (base64),
// not empty or the checksum of a multipart upload's parts ("...-3").
func comparableSum(sum string) bool { return sum != "" && !strings.Contains(sum, "-") }

// lockState is a version's Object Lock protection.
type lockState struct {
	Mode  string    // "", GOVERNANCE or COMPLIANCE
	Until time.Time // zero without retention
	Hold  bool
}

// lockOf reads a version's retention and legal hold from its HEAD answer
// (nil if HEAD failed), asking GetObjectRetention and GetObjectLegalHold
// only for what that answer leaves out: servers show lock headers only to
// callers allowed to read them, so their absence proves nothing.
func lockOf(ctx context.Context, t *Target, in *s3api.HeadObjectInput, head *s3api.HeadObjectOutput, wantHold bool) (lockState, error) {
	var s lockState
	if head != nil {
		s.Mode, s.Until = string(head.ObjectLockMode), aws.ToTime(head.ObjectLockRetainUntilDate)
		s.Hold = head.ObjectLockLegalHoldStatus == types.ObjectLockLegalHoldStatusOn
	}
	c := t.S3.Client()
	if s.Mode == "" || s.Until.IsZero() {
		out, err := c.GetObjectRetention(ctx, &s3api.GetObjectRetentionInput{Bucket: in.Bucket, Key: in.Key, VersionId: in.VersionId})
		switch {
		case err == nil && out.Retention != nil:
			s.Mode, s.Until = string(out.Retention.Mode), aws.ToTime(out.Retention.RetainUntilDate)
		case err == nil || noObjectLock(err):
			s.Mode, s.Until = "", time.Time{}
		default:
			return lockState{}, fmt.Errorf("read the retention of %s: %w", aws.ToString(in.Key), err)
		}
	}
	if wantHold && !s.Hold {
		out, err := c.GetObjectLegalHold(ctx, &s3api.GetObjectLegalHoldInput{Bucket: in.Bucket, Key: in.Key, VersionId: in.VersionId})
		switch {
		case err == nil:
			s.Hold = out.LegalHold != nil && out.LegalHold.Status == types.ObjectLockLegalHoldStatusOn
		case !noObjectLock(err):
			return lockState{}, fmt.Errorf("read the legal hold of %s: %w", aws.ToString(in.Key), err)
		}
	}
	return s, nil
}

// noObjectLock reports S3's answer for a version without retention or
// legal hold, or in a bucket without Object Lock.
func noObjectLock(err error) bool {
	switch s3.APICode(err) {
	case "NoSuchObjectLockConfiguration", "ObjectLockConfigurationNotFoundError":
		return true
	case "InvalidRequest": // AWS: "Bucket is missing Object Lock Configuration"
		var apiErr smithy.APIError
		return errors.As(err, &apiErr) && strings.Contains(apiErr.ErrorMessage(), "Object Lock")
	}
	return false
}

// lockProblems compares a version's lock with what the offsite (mode) and
// the record promise, and says what falls short. A retention whose
// recorded date has passed may have lapsed; only a retention the record
// still counts on, or one the offsite's lock requires and the record does
// not date, must be there.
func lockProblems(mode string, rec catalog.OffsiteObject, got lockState, now time.Time) []string {
	var out []string
	// S3 keeps retention dates to the second or millisecond; the record
	// has the push's nanoseconds.
	want := rec.RetainUntil.Truncate(time.Second)
	switch {
	case got.Mode == "":
		if rec.RetainUntil.After(now) {
			out = append(out, fmt.Sprintf("has no retention; it was pushed with retention until %s, so it can now be deleted", when(rec.RetainUntil)))
		} else if rec.RetainUntil.IsZero() && mode != "" {
			out = append(out, fmt.Sprintf("has no retention, though the offsite locks every object (%s), so it can be deleted", mode))
		}
	default:
		if mode == string(types.ObjectLockModeCompliance) && got.Mode == string(types.ObjectLockModeGovernance) {
			out = append(out, "is retained in GOVERNANCE mode, which administrators can bypass, where the offsite wants COMPLIANCE")
		}
		if !rec.RetainUntil.IsZero() && got.Until.Before(want) {
			out = append(out, fmt.Sprintf("is retained only until %s, earlier than the %s recorded at push: someone shortened its retention", when(got.Until), when(rec.RetainUntil)))
		}
	}
	if rec.LegalHold && !got.Hold {
		out = append(out, "has its legal hold off; it was on when pushed")
	}
	return out
}

// unexpected describes a vault-shaped key the catalog has no record of.
func unexpected(key string, hist *history) Finding {
	return Finding{Kind: Unexpected, Key: key, Detail: fmt.Sprintf(
		"the catalog has no record of this object (%s); another host may have pushed it, or a push is still running; if neither, someone planted it",
		describeVersions(hist.versions, 3))}
}

// describeVersions names up to n versions, newest first.
func describeVersions(vs []objectVersion, n int) string {
	var parts []string
	for i, v := range vs {
		if i == n {
			parts = append(parts, fmt.Sprintf("and %d more", len(vs)-n))
			break
		}
		what := "version"
		if v.Marker {
			what = "delete marker"
		}
		parts = append(parts, fmt.Sprintf("%s %s written %s", what, versionName(v.ID), when(v.Modified)))
	}
	return strings.Join(parts, ", ")
}

func versionName(id string) string { return orNone(id, "null") }

func when(t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	return t.UTC().Format(time.RFC3339)
}

func orNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

// abbreviate cuts s to at most n bytes and "...", between characters.
func abbreviate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "..."
}

// httpStatus is the HTTP status of the response that caused err, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}
