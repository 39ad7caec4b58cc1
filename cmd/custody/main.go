// Command custody gives AI/ML data a chain of custody: versioned, encrypted,
// deduplicated snapshots of datasets, restorable at any version.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/custodyhq/custody/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
