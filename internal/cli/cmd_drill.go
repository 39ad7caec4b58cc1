package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/daemon"
	"github.com/custodyhq/custody/internal/guard/drill"
	"github.com/custodyhq/custody/internal/snapshot"
)

func newDrillCmd(g *globals) *cobra.Command {
	var o daemon.DrillOptions
	var dataset string
	cmd := &cobra.Command{
		Use:   "drill [--dataset D] [--variant V] [--rate FILES_PER_S] [--json]",
		Short: "Self-test the guard: attack a scratch copy as an unprivileged user and measure detection, containment, loss and recovery",
		Long: `drill guards a scratch dataset (generated, or a copy of --dataset's latest
version) with its own throwaway vault and catalog, attacks it as uid 65534
with one of the attack variants, and reports the time to detect, the time
to contain, the files lost before the attacker was stopped, whether the gate
closed and whether every damaged file was recovered. Nothing outside the
scratch directory is touched. It needs root. Exit 1 when the attack was not
contained or a file was not recovered.

Variants: ` + strings.Join(drill.Variants, ", "),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if os.Geteuid() != 0 {
				return fmt.Errorf("drill needs root: the guard uses fanotify and locks the attacker out")
			}
			if !validVariant(o.Variant) {
				return usagef("drill: --variant %q: use one of %s", o.Variant, strings.Join(drill.Variants, ", "))
			}
			exe, err := os.Executable()
			if err != nil {
				return err
			}
			o.Exe, o.Logger = exe, g.log
			if o.Variant == drill.Slow && !cmd.Flags().Changed("rate") {
				o.Rate = drill.SlowRate
			}
			ctx := cmd.Context()
			if dataset != "" {
				from, cleanup, err := g.restoreLatest(ctx, dataset)
				if err != nil {
					return err
				}
				defer cleanup()
				o.From = from
			}
			rep, err := daemon.Drill(ctx, o)
			if err != nil {
				return err
			}
			if g.json {
				if err := printJSON(g.stdout, rep); err != nil {
					return err
				}
			} else {
				printDrill(g, rep)
			}
			if !rep.Contained || !rep.Recoverable {
				return exitCode(ExitFailure)
			}
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVarP(&dataset, "dataset", "d", "", "attack a copy of this dataset's latest version (default: a generated dataset)")
	fl.StringVar(&o.Variant, "variant", drill.EncryptInPlace, "attack variant")
	fl.Float64Var(&o.Rate, "rate", 100, "files the attacker damages per second (0: as fast as it can)")
	fl.IntVar(&o.Files, "files", 1000, "files in the generated dataset")
	fl.BoolVar(&o.Keep, "keep", false, "keep the scratch directory")
	fl.BoolVar(&o.Canaries, "canaries", true, "place canary files, as 'guard --canaries' does (--canaries=false: catch the attack by content and rates alone)")
	return cmd
}

func validVariant(v string) bool {
	for _, x := range drill.Variants {
		if v == x {
			return true
		}
	}
	return false
}

// restoreLatest restores dataset's latest version into a temporary
// directory.
func (g *globals) restoreLatest(ctx context.Context, dataset string) (string, func(), error) {
	v, err := g.openVault(ctx)
	if err != nil {
		return "", nil, err
	}
	defer closeVault(v)
	ver, err := v.ResolveVersion(ctx, "latest", dataset)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "custody-drill-src-")
	if err != nil {
		return "", nil, err
	}
	cleanup := func() { os.RemoveAll(dir) }
	if _, err := snapshot.Restore(ctx, v, ver.Tree, "", dir, snapshot.RestoreOptions{}); err != nil {
		cleanup()
		return "", nil, fmt.Errorf("drill: restoring %s: %w", dataset, err)
	}
	return dir, cleanup, nil
}

func printDrill(g *globals, r *daemon.DrillReport) {
	w := g.stdout
	yes := map[bool]string{true: "yes", false: "NO"}
	canaries := "with canaries"
	if !r.Canaries {
		canaries = "without canaries"
	}
	fmt.Fprintf(w, "attack:           %s at %s on %d files, %s\n", r.Variant, rateText(r.Rate), r.Files, canaries)
	fmt.Fprintf(w, "detected:         %s", yes[r.Detected])
	if r.Detected {
		fmt.Fprintf(w, " (%s) %v after the first damaged file", r.Severity, r.TimeToDetect.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "contained:        %s", yes[r.Contained])
	if r.Contained {
		fmt.Fprintf(w, ", %v after the first damaged file", r.TimeToContain.Round(time.Millisecond))
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "files lost:       %d (%.2f%% of the dataset)\n", r.FilesLost, 100*r.LostShare)
	fmt.Fprintf(w, "gate closed:      %s\n", yes[r.GateClosed])
	fmt.Fprintf(w, "recovered:        %s (%d restored", yes[r.Recoverable], r.Restored)
	if len(r.Unrecovered) > 0 {
		fmt.Fprintf(w, ", %d not: %s", len(r.Unrecovered), strings.Join(r.Unrecovered[:min(5, len(r.Unrecovered))], ", "))
	}
	fmt.Fprintln(w, ")")
}

func rateText(r float64) string {
	if r <= 0 {
		return "full speed"
	}
	return fmt.Sprintf("%g files/s", r)
}
