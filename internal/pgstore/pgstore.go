// Package pgstore is otpgate's PostgreSQL backend (docs/postgres.md): one
// enrollment for a fleet of hosts, with every code checked inside the
// database.
//
// The schema (schema/v1.sql, embedded) holds users, their authenticators
// (several per user, each with its own last accepted step), the argon2id
// keys of their backup codes, their lockout state and one policy for the
// fleet. Hosts log in with a role that is a member of otpgate_host, which
// may only execute otpgate.verify (and the two halves it runs),
// otpgate.status and otpgate.backup_salts: it can read no table, so no
// host ever sees a secret, a key or another user's state.
//
// One attempt is two transactions, both inside otpgate.verify: the first
// locks the user's row, refuses while the user is locked, and counts the
// attempt as a failure before the code is looked at; the second checks
// the code under the rules of internal/verify and, on success, undoes the
// charge. A host that aborts the second transaction after seeing its
// answer has still spent a guess, so the lockout holds against a host
// that is not honest.
//
// It is not yet wired into the helper, the configuration or the command
// line: Admin and Client are the layer those will use.
package pgstore

import (
	_ "embed"
	"time"

	"github.com/otpgate/otpgate/internal/config"
)

// SchemaVersion is the version of the schema this package applies and
// knows. Init refuses a database whose version is newer.
const SchemaVersion = 1

//go:embed schema/v1.sql
var schemaV1 string

// The roles and the schema Init creates. Roles are global to a
// PostgreSQL cluster; the schema is per database.
const (
	// HostRole is the group role (NOLOGIN) whose members are the hosts'
	// login roles. It may execute HostRoutines and nothing else.
	HostRole = "otpgate_host"
	// OwnerRole owns the schema, its tables and its functions, and so is
	// the role the SECURITY DEFINER functions run as: not a superuser,
	// not able to log in.
	OwnerRole = "otpgate_owner"
	// Schema is the schema every otpgate object, pgcrypto included, lives
	// in.
	Schema = "otpgate"
)

// HostRoutines are the routines HostRole may execute, as regprocedure
// names (their argument types).
var HostRoutines = []string{
	"otpgate.verify(text,text,bytea[],text,text,text,text,text,text,integer,timestamp with time zone,integer)",
	"otpgate.begin_attempt(text,text,bytea[],text,text)",
	"otpgate.finish_attempt(bytea)",
	"otpgate.status(text)",
	"otpgate.backup_salts(text)",
}

// ownerRoutines are pgcrypto's functions the owner's functions call; the
// extension grants them to PUBLIC, Init takes that back.
var ownerRoutines = []string{
	"otpgate.hmac(bytea,bytea,text)",
	"otpgate.gen_random_bytes(integer)",
}

// Policy is the verification policy, one for every host: the steps
// accepted on either side of now, the consecutive failures that lock a
// user, and how long a lock lasts. It is stored in the database; hosts do
// not pass their own.
type Policy struct {
	Window       int
	MaxFailures  int
	LockDuration time.Duration
}

// DefaultPolicy is the policy a new database starts with: the defaults of
// config.toml.
func DefaultPolicy() Policy {
	c := config.Default()
	return Policy{Window: c.Window, MaxFailures: c.MaxFailures, LockDuration: c.LockDuration}
}

// Bounds that keep a call from hanging when the database is unreachable
// or busy.
const (
	// DefaultConnectTimeout applies when the DSN has no connect_timeout.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultQueryTimeout bounds one call of Client when its context has
	// no earlier deadline.
	DefaultQueryTimeout = 5 * time.Second
)
