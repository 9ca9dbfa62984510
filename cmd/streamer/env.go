package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
)

// envName is the environment variable that sets a flag: --auth-token → STREAMER_AUTH_TOKEN.
func envName(flagName string) string {
	return "STREAMER_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlagsEnv is parseFlags plus environment defaults: every flag not given on the
// command line takes the value of its STREAMER_* variable when that is set. Flags win
// over the environment.
func parseFlagsEnv(fs *flag.FlagSet, args []string) error {
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var bad error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || bad != nil {
			return
		}
		if v, ok := os.LookupEnv(envName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				bad = fmt.Errorf("%s=%q: %w", envName(f.Name), v, err)
			}
		}
	})
	if bad != nil {
		fmt.Fprintln(fs.Output(), bad)
		return errUsage
	}
	return nil
}
