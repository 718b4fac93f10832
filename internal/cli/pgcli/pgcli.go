// Package pgcli links the PostgreSQL backend into the otpgate command
// line: importing it sets cli.OpenDB to pgstore's administrator
// connection and links doctor's database checks (internal/doctor/pgprobe).
// Only otpgate-db imports it; the otpgate command runs otpgate-db for
// the database commands, so that its own start (sshcheck, at every
// ForceCommand login) does not pay for the client (docs/postgres.md).
package pgcli

import (
	"context"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/cli"
	_ "github.com/otpgate/otpgate/internal/doctor/pgprobe" // doctor's database checks
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/keystore"
)

func init() {
	cli.OpenDB = Open
	cli.PostgresDoctor = true
}

// Open connects with an administrator's DSN.
func Open(ctx context.Context, dsn string) (cli.DBAdmin, error) {
	a, err := pgstore.OpenAdmin(ctx, dsn)
	if err != nil {
		return nil, err
	}
	return admin{a}, nil
}

// admin is pgstore.Admin as cli.DBAdmin.
type admin struct{ a *pgstore.Admin }

func (d admin) Close()            { d.a.Close(context.Background()) }
func (d admin) KnownVersion() int { return pgstore.SchemaVersion }
func (d admin) SchemaVersion(ctx context.Context) (int, error) {
	return d.a.SchemaVersion(ctx)
}
func (d admin) Init(ctx context.Context) error { return d.a.Init(ctx) }

func (d admin) Policy(ctx context.Context) (cli.DBPolicy, error) {
	p, err := d.a.Policy(ctx)
	return cli.DBPolicy(p), err
}

func (d admin) SetPolicy(ctx context.Context, p cli.DBPolicy) error {
	return d.a.SetPolicy(ctx, pgstore.Policy(p))
}

func (d admin) Users(ctx context.Context) ([]string, error) { return d.a.Users(ctx) }
func (d admin) Status(ctx context.Context, user string) (account.Status, error) {
	return d.a.Status(ctx, user)
}

func authenticator(au keystore.Authenticator, lastStep int64) pgstore.Authenticator {
	return pgstore.Authenticator{Label: au.Label, Secret: au.Secret, Params: au.Params, Created: au.Created, LastStep: lastStep}
}

func (d admin) SetEnrollment(ctx context.Context, user string, au keystore.Authenticator, lastStep int64, hashes []string, replace bool) error {
	return d.a.SetEnrollment(ctx, user, authenticator(au, lastStep), hashes, replace)
}

func (d admin) AddAuthenticator(ctx context.Context, user string, au keystore.Authenticator, lastStep int64) error {
	return d.a.AddAuthenticator(ctx, user, authenticator(au, lastStep))
}

func (d admin) RemoveAuthenticator(ctx context.Context, user, label string) (int, error) {
	return d.a.RemoveAuthenticator(ctx, user, label)
}
func (d admin) Reset(ctx context.Context, user string) error  { return d.a.Reset(ctx, user) }
func (d admin) Unlock(ctx context.Context, user string) error { return d.a.Unlock(ctx, user) }
func (d admin) NewBackupHashes(ctx context.Context, user string, hashes []string) error {
	return d.a.NewBackupHashes(ctx, user, hashes)
}

func (d admin) ImportUser(ctx context.Context, user string, u keystore.User, st keystore.State, replace bool) error {
	return d.a.ImportUser(ctx, user, u, st, replace)
}

func (d admin) ExportUser(ctx context.Context, user string) (keystore.User, keystore.State, error) {
	return d.a.ExportUser(ctx, user)
}
