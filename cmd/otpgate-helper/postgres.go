//go:build postgres

package main

import (
	"github.com/otpgate/otpgate/internal/pgstore"
)

// Built with -tags postgres, this is otpgate-helper-pg: the same helper
// with the PostgreSQL backend linked in.
func init() {
	p := &pgstore.Pool{}
	pg.backend, pg.reason, pg.close = p, pgstore.Reason, p.Close
}
