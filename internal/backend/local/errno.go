package local

import "syscall"

// OS errors that advice explains. Kept apart so a port to another OS only
// has to look here.
var (
	errNoSpace      error = syscall.ENOSPC
	errQuota        error = syscall.EDQUOT
	errReadOnly     error = syscall.EROFS
	errIO           error = syscall.EIO
	errNotSupported error = syscall.ENOTSUP
)
