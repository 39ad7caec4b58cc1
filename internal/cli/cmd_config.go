package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/spf13/cobra"

	"github.com/custodyhq/custody/internal/config"
)

func newConfigCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config example | check FILE",
		Short: "The custody.yaml file: print a commented example, or check one",
	}
	example := &cobra.Command{
		Use:   "example",
		Short: "Print a commented custody.yaml for a ten-stage ML pipeline",
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := g.stdout.Write(config.Example())
			return err
		},
	}
	check := &cobra.Command{
		Use:   "check FILE",
		Short: "Check a custody.yaml: every mistake with its line, column and field; exit 1 if any",
		Args:  cobra.ExactArgs(1),
		RunE: func(_ *cobra.Command, args []string) error {
			b, err := readConfigFile(args[0])
			if err != nil {
				return err
			}
			_, errs := config.Parse(args[0], b)
			if g.json {
				msgs := make([]string, len(errs))
				for i, e := range errs {
					msgs[i] = e.Error()
				}
				if err := printJSON(g.stdout, map[string]any{"file": args[0], "ok": len(errs) == 0, "errors": msgs}); err != nil {
					return err
				}
			} else {
				for _, e := range errs {
					fmt.Fprintln(g.stdout, e)
				}
			}
			if len(errs) > 0 {
				if !g.json {
					fmt.Fprintf(g.stderr, "%s: %d mistakes\n", args[0], len(errs))
				}
				return exitCode(ExitFailure)
			}
			if !g.json {
				fmt.Fprintf(g.stdout, "%s: ok\n", args[0])
			}
			return nil
		},
	}
	cmd.AddCommand(example, check)
	return cmd
}

// readConfigFile reads a config file, saying what to do when it is missing.
func readConfigFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s does not exist (start from 'custody config example > %s')", path, path)
	}
	return b, err
}
