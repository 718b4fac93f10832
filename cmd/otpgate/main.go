// Command otpgate enrolls users, shows their status and administers
// otpgate. See otpgate --help.
package main

import (
	"os"

	"github.com/otpgate/otpgate/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
