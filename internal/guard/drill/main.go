package drill

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes of Main.
const (
	ExitOK        = 0
	ExitFailed    = 1
	ExitUsage     = 2
	ExitLockedOut = 3 // the attack gave up on denied file operations
)

// Main is the drill's hidden entry point, for the guard's CLI to run in a
// separate, unprivileged process (see Command). args are one of
//
//	attack --variant V --dir D [--rate R] [--max N] [--max-denied N] [--note] [--ext E]
//	benign --workload W --dir D [--scale N]
//	prepare --dir D --files N [--seed S]
//
// attack writes a ProgressLine per damaged file to stdout and a summary to
// stderr. It returns an exit code: ExitOK, ExitFailed, ExitUsage or
// ExitLockedOut.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, mainUsage)
		return ExitUsage
	}
	ctx := context.Background()
	fset := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fset.SetOutput(stderr)
	dir := fset.String("dir", "", "the scratch `directory` to work in")
	var run func() error
	switch args[0] {
	case "attack":
		var o AttackOptions
		fset.StringVar(&o.Variant, "variant", "", "attack `variant`: "+strings.Join(Variants, ", "))
		fset.Float64Var(&o.Rate, "rate", 0, "files per second (0: as fast as possible; slow: 0.2)")
		fset.IntVar(&o.Max, "max", 0, "stop after this many files (0: all)")
		fset.IntVar(&o.MaxDenied, "max-denied", 0, fmt.Sprintf("give up after this many denials in a row (0: %d)", DefaultMaxDenied))
		fset.BoolVar(&o.Note, "note", false, "drop a ransom note in each directory")
		fset.StringVar(&o.Ext, "ext", "", "extension for encrypt-rename (default: random)")
		o.Progress = stdout
		run = func() error {
			if o.Variant == "" {
				return usageError("--variant is required")
			}
			o.Dir = *dir
			res, err := Attack(ctx, o)
			fmt.Fprintf(stderr, "drill: %s damaged %d files (%d denied) in %v\n", o.Variant, len(res.Damaged), res.Denied, res.Elapsed.Round(1e6))
			return err
		}
	case "benign":
		workload := fset.String("workload", "", "`workload`: "+strings.Join(Workloads, ", "))
		scale := fset.Int("scale", DefaultScale, "about how many files")
		run = func() error {
			if *workload == "" {
				return usageError("--workload is required")
			}
			return Benign(ctx, *workload, *dir, *scale)
		}
	case "prepare":
		files := fset.Int("files", 0, "how many `files` to write")
		seed := fset.Uint64("seed", 1, "seed for the content")
		run = func() error {
			if *files <= 0 {
				return usageError("--files is required")
			}
			return Prepare(*dir, *files, *seed)
		}
	default:
		fmt.Fprintf(stderr, "drill: unknown command %q\n%s\n", args[0], mainUsage)
		return ExitUsage
	}
	if err := fset.Parse(args[1:]); err != nil {
		return ExitUsage
	}
	if fset.NArg() > 0 {
		fmt.Fprintf(stderr, "drill %s: unexpected arguments %q\n", args[0], fset.Args())
		return ExitUsage
	}
	if *dir == "" {
		fmt.Fprintf(stderr, "drill %s: --dir is required\n", args[0])
		return ExitUsage
	}
	err := run()
	var ue usageError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "drill %s: %s\n", args[0], ue)
		fset.Usage()
		return ExitUsage
	case errors.Is(err, ErrLockedOut):
		fmt.Fprintln(stderr, err)
		return ExitLockedOut
	}
	fmt.Fprintln(stderr, err)
	return ExitFailed
}

type usageError string

func (e usageError) Error() string { return string(e) }

const mainUsage = `usage: drill attack --variant V --dir D [--rate R] [--max N] [--max-denied N] [--note] [--ext E]
       drill benign --workload W --dir D [--scale N]
       drill prepare --dir D --files N [--seed S]`
