package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/kb-labs/sandbox"
)

// doctorCmd reports what this host can enforce for the default (or given)
// configuration; it exits 0 when the host can enforce it, 1 otherwise.
func doctorCmd(env *Env, args []string) int {
	p := newParser("doctor")
	asJSON := p.fs.Bool("json", false, "print the Preflight as JSON")
	configFile := p.fs.String("config", "", "check this config instead of the default")
	if err := p.parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			p.usage(env.Stdout, "sandbox doctor [--json] [--config FILE]")
			return 0
		}
		fmt.Fprintf(env.Stderr, "sandbox doctor: %v\n", err)
		return exitUsage
	}
	var cfg sandbox.Config
	if *configFile != "" {
		var err error
		if cfg, err = sandbox.LoadConfig(*configFile); err != nil {
			fmt.Fprintf(env.Stderr, "sandbox doctor: %v\n", err)
			return exitUsage
		}
	}
	pf := sandbox.RunPreflight(context.Background(), cfg)
	if *asJSON {
		b, _ := json.MarshalIndent(pf, "", "  ")
		fmt.Fprintf(env.Stdout, "%s\n", b)
	} else {
		for _, c := range pf.Checks {
			mark := "ok  "
			if !c.Passed {
				mark = "FAIL"
				if c.Optional {
					mark = "warn"
				}
			}
			line := fmt.Sprintf("%s %s", mark, c.Name)
			if c.Detail != "" {
				line += ": " + c.Detail
			}
			fmt.Fprintln(env.Stdout, line)
			if c.Error != "" {
				fmt.Fprintf(env.Stdout, "     %s\n", c.Error)
			}
			for _, s := range c.Suggestions {
				if !c.Passed {
					fmt.Fprintf(env.Stdout, "     fix: %s\n", s)
				}
			}
		}
		if pf.Passed {
			fmt.Fprintln(env.Stdout, "\nThis host can enforce the configuration.")
		} else {
			fmt.Fprintln(env.Stdout, "\nThis host cannot enforce the configuration: see FAIL above.")
		}
	}
	if pf.Passed {
		return 0
	}
	return 1
}
