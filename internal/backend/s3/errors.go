package s3

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/custodyhq/custody/internal/backend"
)

// apiCode is the S3 error code of err ("NoSuchKey"), or "".
func apiCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// httpStatus is the HTTP status of the response that caused err, or 0.
func httpStatus(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// isNotFound reports a missing object. HEAD responses have no body, so a
// missing bucket looks the same there; New checks the bucket up front.
func isNotFound(err error) bool {
	switch apiCode(err) {
	case "NoSuchKey", "NotFound":
		return true
	case "NoSuchBucket":
		return false
	}
	return httpStatus(err) == http.StatusNotFound
}

func isPreconditionFailed(err error) bool {
	return apiCode(err) == "PreconditionFailed" || httpStatus(err) == http.StatusPreconditionFailed
}

// isInvalidRange reports a range that starts past the end of the object.
func isInvalidRange(err error) bool {
	return apiCode(err) == "InvalidRange" || httpStatus(err) == http.StatusRequestedRangeNotSatisfiable
}

// opError wraps err from op on h, turning a missing object into
// backend.ErrNotFound and adding advice for errors a user can fix.
func (b *S3) opError(op string, h backend.Handle, err error) error {
	if isNotFound(err) {
		return fmt.Errorf("%s %s: %w", op, b.url(h), backend.ErrNotFound)
	}
	return fmt.Errorf("%s %s: %s%w", op, b.url(h), advice(err), err)
}

// advice explains S3 errors a user can fix, in plain words with what to do
// next; it ends in ": " so callers can put the wrapped cause after it.
// The SDK's errors name the operation, the status and the request id, but
// never the credentials.
func advice(err error) string {
	var why string
	switch apiCode(err) {
	case "AccessDenied", "AllAccessDisabled":
		why = "access denied; check that the credentials' policy allows this bucket and prefix"
	case "InvalidAccessKeyId":
		why = "the server does not know this access key; check the credentials"
	case "SignatureDoesNotMatch":
		why = "the server refused the signature; check the secret key (and the clock)"
	case "RequestTimeTooSkewed":
		why = "this machine's clock is too far from the server's; fix the time (NTP) and retry"
	case "NoSuchBucket":
		why = "the bucket does not exist; create it or check its name"
	case "PermanentRedirect", "AuthorizationHeaderMalformed":
		why = "the bucket is in another region; set the region option to the bucket's"
	case "SlowDown", "ServiceUnavailable", "InternalError":
		why = "the server is overloaded or failing and retries did not help; try again later"
	default:
		if httpStatus(err) == http.StatusForbidden {
			why = "access denied; check the access key, the secret key and the bucket policy"
		} else {
			return ""
		}
	}
	return why + ": "
}
