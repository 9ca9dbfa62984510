package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
)

// secretFlag defines --<name> and --<name>-file on fs: a secret given
// directly (or through its STREAMER_* variable, which keeps it out of ps),
// or read from a file (a mounted Kubernetes secret). The returned function
// gives the secret once the flags are parsed; both set is an error.
func secretFlag(fs *flag.FlagSet, name, usage string) func() (string, error) {
	direct := fs.String(name, "", usage+" (visible in ps: prefer $"+envName(name)+" or --"+name+"-file)")
	file := fs.String(name+"-file", "", "`file` holding --"+name+" (surrounding white space ignored)")
	return func() (string, error) {
		switch {
		case *direct != "" && *file != "":
			return "", fmt.Errorf("give --%s or --%s-file, not both", name, name)
		case *file == "":
			return *direct, nil
		}
		b, err := os.ReadFile(*file)
		if err != nil {
			return "", fmt.Errorf("--%s-file: %w", name, err)
		}
		secret := strings.TrimSpace(string(b))
		if secret == "" {
			return "", errors.New("--" + name + "-file " + *file + " is empty")
		}
		return secret, nil
	}
}
