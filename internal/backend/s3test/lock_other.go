//go:build !unix

package s3test

// lockFile does not lock where flock is missing: parallel processes may then
// each build the binary, and the rename in buildVersitygw keeps that safe.
func lockFile(string) (unlock func(), err error) { return func() {}, nil }
