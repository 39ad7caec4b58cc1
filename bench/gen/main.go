// Command gen writes the deterministic data sets the benchmark runs on.
//
// The same seed always gives byte-identical trees, so custody and restic are
// measured on the same data, run after run and machine after machine:
//
//	gen mixed  DIR [--size 1GiB] [--small] [--seed N]
//	gen small  DIR [--count 100000] [--small] [--seed N]
//	gen append DIR [--files 20] [--bytes 65536] [--seed N]
//
// mixed is ~2000 files of 64 KiB–6 MiB (1 GiB), half the bytes random and half
// log/CSV/JSON-lines text that zstd compresses about 3–5×. small is 100,000
// files of 1–4 KiB in 100 directories. append grows chosen files of an existing
// tree, as a pipeline that adds records would. --small scales mixed to 64 MiB
// and small to 5,000 files for smoke runs.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"
)

const usage = `usage:
  gen mixed  DIR [--size 1GiB] [--small] [--seed N]
  gen small  DIR [--count 100000] [--small] [--seed N]
  gen append DIR [--files 20] [--bytes 65536] [--seed N]
`

// errUsage makes main exit 2, as the custody CLI does for usage errors.
var errUsage = errors.New("usage error")

func main() {
	err := run(os.Args[1:], os.Stderr)
	if err == nil {
		return
	}
	if errors.Is(err, errUsage) {
		fmt.Fprint(os.Stderr, err.Error(), "\n", usage)
		os.Exit(2)
	}
	fmt.Fprintln(os.Stderr, "gen:", err)
	os.Exit(1)
}

func run(args []string, log io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	cmd, args := args[0], args[1:]
	fs := flag.NewFlagSet("gen "+cmd, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	seed := fs.Uint64("seed", 1, "seed of the pseudo-random generator")
	small := fs.Bool("small", false, "smoke-test scale (64 MiB mixed, 5,000 small files)")
	size := fs.String("size", "", "total bytes of the mixed set (e.g. 1GiB, 64MiB)")
	count := fs.Int("count", 0, "number of files of the small set")
	files := fs.Int("files", 20, "number of files append grows")
	appendBytes := fs.String("bytes", "64KiB", "bytes append adds to each file")

	dirs, err := parseInterleaved(fs, args)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if len(dirs) != 1 {
		return fmt.Errorf("%w: want exactly one DIR, got %d", errUsage, len(dirs))
	}
	dir := dirs[0]
	start := time.Now()

	switch cmd {
	case "mixed":
		total := int64(1 << 30)
		if *small {
			total = 64 << 20
		}
		if *size != "" {
			if total, err = parseSize(*size); err != nil {
				return fmt.Errorf("%w: --size: %v", errUsage, err)
			}
		}
		st, err := writeMixed(dir, total, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "gen mixed: %d files, %d bytes (%d random, %d text) in %d dirs, %.1fs\n",
			st.files, st.randomBytes+st.textBytes, st.randomBytes, st.textBytes, st.dirs, time.Since(start).Seconds())
	case "small":
		n := 100000
		if *small {
			n = 5000
		}
		if *count > 0 {
			n = *count
		}
		st, err := writeSmall(dir, n, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "gen small: %d files, %d bytes in %d dirs, %.1fs\n",
			st.files, st.randomBytes+st.textBytes, st.dirs, time.Since(start).Seconds())
	case "append":
		n, err := parseSize(*appendBytes)
		if err != nil {
			return fmt.Errorf("%w: --bytes: %v", errUsage, err)
		}
		grown, err := appendFiles(dir, *files, n, *seed)
		if err != nil {
			return err
		}
		fmt.Fprintf(log, "gen append: %d bytes to each of %d files, %.1fs\n", n, grown, time.Since(start).Seconds())
	default:
		return fmt.Errorf("%w: unknown command %q", errUsage, cmd)
	}
	return nil
}

// parseInterleaved parses flags that may come before or after the positional
// arguments (the flag package alone stops at the first positional one).
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return positional, nil
		}
		positional = append(positional, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// parseSize reads a byte count such as 65536, 64KiB, 1GiB, 1.5G (binary units).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSpace(s), "B"), "i")
	mult := float64(1)
	if t != "" {
		switch t[len(t)-1] {
		case 'K', 'k':
			mult = 1 << 10
		case 'M', 'm':
			mult = 1 << 20
		case 'G', 'g':
			mult = 1 << 30
		case 'T', 't':
			mult = 1 << 40
		}
		if mult != 1 {
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size (try 65536, 64KiB, 1GiB)", s)
	}
	return int64(v * mult), nil
}
