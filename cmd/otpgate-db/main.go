// Command otpgate-db is the otpgate command line with the PostgreSQL
// backend linked in: otpgate runs it for otpgate db, for the commands
// given --dsn, and for doctor on a host with backend = "postgres"
// (docs/postgres.md). It takes the same arguments as otpgate.
package main

import (
	"os"

	"github.com/otpgate/otpgate/internal/cli"
	_ "github.com/otpgate/otpgate/internal/cli/pgcli" // the database
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
