// Command vulngate reads govulncheck's JSON output (-format json) on
// standard input and fails if the code calls a vulnerable function in a
// third-party module. Vulnerabilities in the Go standard library are listed
// as warnings, with the Go release that fixes them: they depend on the
// toolchain a binary is built with, not on this repository.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
}

type message struct {
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	called := map[string]frame{}
	fixed := map[string]string{}
	for {
		var m message
		if err := dec.Decode(&m); err == io.EOF {
			break
		} else if err != nil {
			fmt.Fprintln(os.Stderr, "vulngate: reading govulncheck output:", err)
			os.Exit(2)
		}
		if f := m.Finding; f != nil && len(f.Trace) > 0 && f.Trace[0].Function != "" {
			called[f.OSV] = f.Trace[0]
			fixed[f.OSV] = f.FixedVersion
		}
	}
	ids := make([]string, 0, len(called))
	for id := range called {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	failed := false
	for _, id := range ids {
		f := called[id]
		if f.Module == "stdlib" {
			fmt.Printf("warning: %s in the Go standard library (%s %s), fixed in %s: build releases with that Go or newer\n", id, f.Package, f.Version, fixed[id])
			continue
		}
		failed = true
		fmt.Printf("VULNERABLE: %s in %s@%s (%s.%s), fixed in %s\n", id, f.Module, f.Version, f.Package, f.Function, fixed[id])
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("govulncheck: no reachable vulnerability in any module we depend on (%d in the standard library)\n", len(ids))
}
