package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/gaimport"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

const importGAHelp = `usage: otpgate import-google-authenticator (--user NAME [--file PATH] | --all)
         [--remove-original] [--force] [--json] [--dsn ADMIN_DSN]

Takes users over from google-authenticator-libpam without a new scan: the
secret, STEP_SIZE (the period) and the scratch codes (each becomes a
backup code that works once) of the user's ~/.google_authenticator are
stored as the user's otpgate enrollment. Root only.

  --user NAME        the account to import; its home directory and uid
                     come from /etc/passwd, else NSS (getent passwd: LDAP,
                     SSSD)
  --file PATH        read this file instead of ~NAME/.google_authenticator
  --all              every account in /etc/passwd whose home holds one
                     (NSS-only accounts are imported one by one, --user)
  --remove-original  remove the file once the enrollment is stored
                     (default: it is left alone)
  --force            replace an existing otpgate enrollment
  --json             print one object per user, as a JSON array
  --dsn ADMIN_DSN    store the users in the PostgreSQL database instead of
                     this host's store (docs/postgres.md)

Refused: counter-based (HOTP) files, a secret under 128 bits, and a file
that is a symbolic link, not a regular file, not owned by the user, or
writable by group or others. WINDOW_SIZE is compared with otpgate's
window (config.toml, for every user): a wider one is reported, never
applied. RATE_LIMIT and DISALLOW_REUSE are reported as superseded by
otpgate's lockout and replay protection.

exit status: 0 every user imported, 1 a user refused, 2 usage or store error
`

// passwdPath is the passwd database the import reads.
const passwdPath = "/etc/passwd"

// importReport is what the import says about one user.
type importReport struct {
	User     string `json:"user"`
	File     string `json:"file"`
	Imported bool   `json:"imported"`
	Error    string `json:"error,omitempty"`
	// The enrollment stored.
	Algorithm   string `json:"algorithm,omitempty"`
	Digits      int    `json:"digits,omitempty"`
	Period      int    `json:"period,omitempty"`
	BackupCodes int    `json:"backup_codes"`
	// WINDOW_SIZE of the file, the steps on either side it stood for,
	// and otpgate's window.
	WindowSize    int `json:"window_size,omitempty"`
	WindowNeeded  int `json:"window_needed"`
	WindowOtpgate int `json:"window_otpgate"`
	// Superseded options and other notes, one sentence each.
	Superseded      []string `json:"superseded"`
	Notes           []string `json:"notes"`
	Replaced        bool     `json:"replaced"`
	OriginalRemoved bool     `json:"original_removed"`
}

func runImportGA(e *env, args []string) error {
	fs := newFlags("import-google-authenticator")
	name := fs.String("user", "", "")
	file := fs.String("file", "", "")
	all := fs.Bool("all", false, "")
	remove := fs.Bool("remove-original", false, "")
	force := fs.Bool("force", false, "")
	asJSON := fs.Bool("json", false, "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	hint := "run otpgate import-google-authenticator --help"
	switch {
	case *all && *name != "":
		return withHint(usageErr("import-google-authenticator: --user and --all exclude each other"), hint)
	case !*all && *name == "":
		return withHint(usageErr("import-google-authenticator needs --user NAME or --all"), hint)
	case *all && *file != "":
		return withHint(usageErr("import-google-authenticator: --file goes with --user, not --all"), hint)
	}
	if os.Geteuid() != 0 {
		return withHint(deniedErr("import-google-authenticator needs root: it reads files in users' homes and writes the store"), "run it with sudo")
	}
	var accounts []gaimport.Account
	if *all {
		var err error
		accounts, err = gaimport.All(passwdPath, func(p string) bool {
			_, err := os.Lstat(p)
			return err == nil
		})
		if err != nil {
			return err
		}
	} else {
		user, err := requireUser("import-google-authenticator", *name)
		if err != nil {
			return err
		}
		a, err := gaimport.Lookup(passwdPath, user)
		if err != nil {
			// Not in /etc/passwd: an LDAP or SSSD account, through NSS.
			var nerr error
			if a, nerr = gaimport.LookupNSS(nss.Default, user); nerr != nil {
				return withHint(deniedErr("%v, and %v", err, nerr), "import only accounts this system knows (getent passwd "+user+")")
			}
		}
		accounts = []gaimport.Account{a}
	}

	reports := []importReport{}
	refused := 0
	for _, a := range accounts {
		path := a.DefaultPath()
		if *file != "" {
			path = *file
		}
		r := e.importOne(a, path, *force, *remove)
		if !r.Imported {
			refused++
		}
		reports = append(reports, r)
	}
	if *asJSON {
		if err := printJSON(e.stdout, reports); err != nil {
			return err
		}
	} else {
		if *all && len(accounts) == 0 {
			fmt.Fprintf(e.stdout, "no home directory in %s holds a %s file; nothing to import\n", passwdPath, gaimport.FileName)
		}
		for _, r := range reports {
			if r.Imported || *all { // one user's refusal is the error below
				printImport(e, r)
			}
		}
	}
	switch {
	case refused == 0:
		return nil
	case len(reports) == 1:
		return deniedErr("%s: %s", reports[0].User, reports[0].Error)
	}
	return deniedErr("%d of %d users were not imported; see above", refused, len(reports))
}

func printImport(e *env, r importReport) {
	w := e.stdout
	if !r.Imported {
		if r.Error != "" {
			fmt.Fprintf(w, "%s: not imported: %s\n", r.User, r.Error)
		}
		return
	}
	fmt.Fprintf(w, "%s: imported from %s (%s, %d digits, %d s, %d backup codes from the scratch codes)\n",
		r.User, r.File, r.Algorithm, r.Digits, r.Period, r.BackupCodes)
	for _, s := range r.Superseded {
		fmt.Fprintf(w, "  superseded: %s\n", s)
	}
	for _, s := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", s)
	}
	if r.OriginalRemoved {
		fmt.Fprintf(w, "  %s removed\n", r.File)
	} else {
		fmt.Fprintf(w, "  %s left in place (pam_google_authenticator still reads it; remove it once the PAM stacks use otpgate)\n", r.File)
	}
}

// importOne imports one account's file; every refusal ends up in the
// report's Error, and nothing is written then.
func (e *env) importOne(a gaimport.Account, path string, force, remove bool) importReport {
	r := importReport{User: a.Name, File: path, WindowOtpgate: e.cfg.Window, Superseded: []string{}, Notes: []string{}}
	fail := func(format string, args ...any) importReport {
		r.Error = fmt.Sprintf(format, args...)
		return r
	}
	if err := keystore.ValidUser(a.Name); err != nil {
		return fail("not a user name otpgate can store")
	}
	src, err := gaimport.Open(path, a.UID)
	if errors.Is(err, fs.ErrNotExist) {
		return fail("%s does not exist", path)
	}
	if err != nil {
		return fail("%v", err)
	}
	defer src.Close()
	f, err := gaimport.Parse(src.Data)
	if errors.Is(err, gaimport.ErrHOTP) {
		return fail("%s: %v; enroll this user afresh with otpgate enroll --user %s", path, err, a.Name)
	}
	if err != nil {
		return fail("%s: %v; nothing was imported", path, err)
	}
	params := totp.Params{Algorithm: "SHA1", Digits: gaimport.Digits, Period: f.StepSize}
	if err := params.Check(); err != nil {
		return fail("%s: STEP_SIZE %d: %v; enroll this user afresh", path, f.StepSize, err)
	}
	r.Algorithm, r.Digits, r.Period = params.Algorithm, params.Digits, params.Period
	r.WindowSize, r.WindowNeeded = f.WindowSize, f.StepsEachSide()
	raise := "raise window in " + e.configPath
	if e.db != nil {
		raise = "raise it with otpgate db policy --dsn ADMIN_DSN --window N"
	}
	switch {
	case r.WindowNeeded > e.cfg.Window:
		r.Notes = append(r.Notes, fmt.Sprintf("WINDOW_SIZE %d accepted %d steps on either side; otpgate's window is %d for every user and was not widened: a phone whose clock is off by more than %d s is refused; %s if needed",
			f.WindowSize, r.WindowNeeded, e.cfg.Window, e.cfg.Window*f.StepSize, raise))
	case r.WindowNeeded < e.cfg.Window:
		r.Notes = append(r.Notes, fmt.Sprintf("WINDOW_SIZE %d accepted %d steps on either side; otpgate's window is %d for every user",
			f.WindowSize, r.WindowNeeded, e.cfg.Window))
	}
	if f.RateLimit != "" {
		r.Superseded = append(r.Superseded, fmt.Sprintf("RATE_LIMIT %s: otpgate locks the user after %d failures for %s (max_failures, lock_duration)",
			f.RateLimit, e.cfg.MaxFailures, e.cfg.LockDuration))
	}
	if f.DisallowReuse {
		r.Superseded = append(r.Superseded, "DISALLOW_REUSE: otpgate accepts every code once, always")
	} else {
		r.Notes = append(r.Notes, "the file allowed a code to be used more than once; otpgate accepts every code once")
	}
	for _, o := range f.Ignored {
		r.Notes = append(r.Notes, fmt.Sprintf("option %s is not carried over", o))
	}
	hashes := []string{}
	if len(f.Scratch) > 0 {
		if hashes, err = backupcode.HashScratchSet(f.Scratch); err != nil {
			return fail("%v", err)
		}
	} else {
		r.Notes = append(r.Notes, fmt.Sprintf("no scratch codes: the user has no backup codes; run otpgate backup-codes --user %s", a.Name))
	}
	// Steps the file lists as used stay used, so a code typed just before
	// the import cannot be replayed just after it; a step past the window
	// from now is not believed.
	now := time.Now()
	var lastStep int64
	for _, s := range f.UsedSteps {
		if s <= totp.Step(now, params.Period)+int64(e.cfg.Window) {
			lastStep = max(lastStep, s)
		}
	}

	if e.db != nil {
		return e.importOneDB(r, a.Name, keystore.User{
			Authenticators: []keystore.Authenticator{{Label: keystore.DefaultLabel, Secret: f.Secret, Params: params, Created: now}},
			BackupHashes:   hashes,
		}, lastStep, force, remove, src)
	}
	lock, err := e.store.Lock(a.Name, 10*time.Second)
	if err != nil {
		return fail("%v", err)
	}
	defer lock.Unlock()
	_, err = lock.ReadUser()
	switch {
	case err == nil && !force:
		return fail("already enrolled in otpgate; nothing was changed (add --force to replace the enrollment with the imported one)")
	case err != nil && !errors.Is(err, keystore.ErrNotEnrolled) && !force:
		return fail("%v", err)
	}
	r.Replaced = err == nil
	st, err := lock.ReadState()
	if err != nil {
		return fail("%v", err)
	}
	// The imported secret is the user's one authenticator (a --force
	// import replaces them all), so only its step is kept.
	st.LastSteps = nil
	st.SetLastStep(keystore.DefaultLabel, lastStep)
	u := keystore.User{
		Authenticators: []keystore.Authenticator{{Label: keystore.DefaultLabel, Secret: f.Secret, Params: params, Created: now}},
		BackupHashes:   hashes,
	}
	if err := lock.WriteUser(u); err != nil {
		return fail("%v", err)
	}
	if err := lock.WriteState(st); err != nil {
		return fail("%v", err)
	}
	r.Imported = true
	r.BackupCodes = len(hashes)
	e.importDone(&r, src, remove)
	return r
}

// importDone logs an import stored and removes the original if asked.
func (e *env) importDone(r *importReport, src *gaimport.Source, remove bool) {
	path := r.File
	e.log.Info(authlog.Fields("user", r.User, "action", "import-google-authenticator", "by", whoami(),
		"file", path, "scratch_codes", strconv.Itoa(r.BackupCodes), "replaced", strconv.FormatBool(r.Replaced)))
	if remove {
		if err := src.Remove(); err != nil {
			r.Notes = append(r.Notes, fmt.Sprintf("the enrollment is stored, but the original was not removed: %v", err))
		} else {
			r.OriginalRemoved = true
		}
	}
}

// importOneDB stores an imported user in the database (--dsn), the steps
// the file lists as used as the authenticator's last step.
func (e *env) importOneDB(r importReport, user string, u keystore.User, lastStep int64, force, remove bool, src *gaimport.Source) importReport {
	old, err := e.db.Status(user)
	if err != nil {
		r.Error = err.Error()
		return r
	}
	var st keystore.State
	st.SetLastStep(keystore.DefaultLabel, lastStep)
	// An import over an enrollment (--force) replaces the authenticators
	// and backup codes and keeps the failures and lock.
	st.Failures, st.LastSuccess, st.LastFailure = old.Failures, old.LastSuccess, old.LastFailure
	if old.Locked {
		st.LockedUntil = old.LockedUntil
	}
	ctx, cancel := e.db.ctx()
	defer cancel()
	if err := e.db.admin.ImportUser(ctx, user, u, st, force); err != nil {
		if old.Enrolled && !force {
			r.Error = "already enrolled in the database " + e.db.name + "; nothing was changed (add --force to replace the enrollment with the imported one)"
		} else {
			r.Error = err.Error()
		}
		return r
	}
	r.Imported, r.Replaced, r.BackupCodes = true, old.Enrolled, len(u.BackupHashes)
	e.importDone(&r, src, remove)
	return r
}
