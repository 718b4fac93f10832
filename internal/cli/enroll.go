package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/qrterm"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

const enrollHelp = `usage: otpgate enroll [--user NAME] [--add] [--label LABEL] [--qr ansi|utf8|none] [--qr-png FILE] [--no-confirm] [--force] [--json [--dsn ADMIN_DSN]

Makes a new 160-bit secret, shows it as a QR code and an otpauth:// URI
for the authenticator app, asks for one code from the app, saves the
secret, and prints the backup codes once. They are never shown again.

  --user NAME     the account to enroll (default: you)
  --add           add one more authenticator (a second phone, a hardware
                  token) to an enrolled account; the others and the backup
                  codes keep working. A normal user is first asked for a
                  code of an existing authenticator. Needs --label
  --label LABEL   the authenticator's name, 1 to 32 of A-Z a-z 0-9 . _ -
                  (default: "default"); otpgate status lists them, and
                  otpgate reset --label removes one
  --qr MODE       utf8 (default, for light-on-dark terminals), ansi (explicit
                  colours, any terminal), or none
  --qr-png FILE   also write the QR code to FILE (a new file, mode 0600)
  --no-confirm    save without asking for a code from the app
  --force         replace an existing secret; its codes and backup codes
                  stop working (the failure count is kept); with --user,
                  also enroll a name the system does not know (yet)
  --json          print {"user","uri","secret","backup_codes"} on stdout;
                  the QR code and prompts go to stderr
  --dsn ADMIN_DSN act on the PostgreSQL database instead of this host's
                  store (otpgate db --help; docs/postgres.md)
                  (a name this machine does not know is then a note, not
                  a refusal: the database serves a fleet)
`

// confirmTries is how many codes enroll asks for before giving up.
const confirmTries = 3

func runEnroll(e *env, args []string) error {
	fs := newFlags("enroll")
	name := fs.String("user", "", "")
	qrMode := fs.String("qr", "utf8", "")
	qrPNG := fs.String("qr-png", "", "")
	noConfirm := fs.Bool("no-confirm", false, "")
	force := fs.Bool("force", false, "")
	asJSON := fs.Bool("json", false, "")
	add := fs.Bool("add", false, "")
	label := fs.String("label", "", "")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *qrMode != "utf8" && *qrMode != "ansi" && *qrMode != "none" {
		return usageErr("enroll: --qr %q: use utf8, ansi or none", *qrMode)
	}
	if err := checkAddFlags(*add, *force, *label); err != nil {
		return err
	}
	user, err := targetUser(*name)
	if err != nil {
		return err
	}
	if old, err := e.be.Labels(user); err == nil && *add {
		if err := canAdd(user, old, *label); err != nil {
			return err
		}
	} else if err == nil && !*force {
		return withHint(deniedErr("%s is already enrolled; nothing was changed", user),
			"to replace the secret run otpgate enroll --user "+user+" --force (the old app entries and backup codes stop working); to add another authenticator, --add --label NAME")
	} else if err != nil && !errors.Is(err, keystore.ErrNotEnrolled) && !*force {
		return err
	}
	if *name != "" && !*force {
		if err := knownUser(user); err != nil && e.db == nil {
			return err
		} else if err != nil {
			// The database serves a fleet: this machine need not know
			// every account of it.
			fmt.Fprintf(e.stderr, "otpgate: note: %s\n", oneLine(err.Error()))
		}
	}

	en, err := e.mgr.NewEnrollment(user)
	if err != nil {
		return err
	}
	en.Label = *label
	// Human output goes to stdout, unless stdout is for the JSON.
	out := e.stdout
	if *asJSON {
		out = e.stderr
	}
	matrix, err := qrterm.Matrix(en.URI)
	if err != nil {
		return err
	}
	if *qrPNG != "" {
		if err := writePNG(*qrPNG, matrix); err != nil {
			return err
		}
	}
	if *qrMode != "none" {
		fmt.Fprintf(out, "Scan this QR code with your authenticator app:\n\n")
		if *qrMode == "ansi" {
			fmt.Fprint(out, qrterm.ANSI(matrix))
		} else {
			fmt.Fprint(out, qrterm.UTF8(matrix))
		}
		fmt.Fprintln(out)
	}
	if !*asJSON {
		fmt.Fprintf(out, "Or add it by hand: %s\nURI: %s\n\n", totp.GroupKey(totp.EncodeSecret(en.Secret)), en.URI)
	}

	opts := account.SaveOptions{Replace: *force, Add: *add}
	if !*noConfirm {
		code, err := confirm(e, out, en)
		if err != nil {
			return err
		}
		opts.Confirm = code
	}
	codes, err := e.be.Save(en, opts)
	if errors.Is(err, account.ErrEnrolled) {
		return withHint(deniedErr("%s was enrolled meanwhile; nothing was changed", user), "add --force to replace the secret, or --add --label NAME to add one")
	}
	if errors.Is(err, account.ErrLabelTaken) || errors.Is(err, account.ErrTooMany) {
		return addErr(user, *label, err)
	}
	if err != nil {
		return fmt.Errorf("%w; nothing was saved", err)
	}
	if codes == nil {
		adminLog(e, "add-authenticator", user, "authenticator", en.Label)
	} else {
		adminLog(e, "enroll", user)
	}
	if *asJSON {
		if codes == nil {
			codes = []string{}
		}
		return printJSON(e.stdout, struct {
			User        string   `json:"user"`
			Label       string   `json:"label"`
			URI         string   `json:"uri"`
			Secret      string   `json:"secret"`
			BackupCodes []string `json:"backup_codes"`
		}{user, labelOrDefault(en.Label), en.URI, totp.EncodeSecret(en.Secret), codes})
	}
	if codes == nil {
		fmt.Fprintf(out, "Added authenticator %s to %s; the others and the backup codes keep working.\n", en.Label, user)
		return nil
	}
	fmt.Fprintf(out, "Enrolled %s.\n", user)
	printCodes(out, codes)
	return nil
}

// checkAddFlags checks --add, --force and --label together.
func checkAddFlags(add, force bool, label string) error {
	if label != "" {
		if err := keystore.ValidLabel(label); err != nil {
			return usageErr("enroll: --label: %v", err)
		}
	}
	if add && label == "" {
		return usageErr("enroll: --add needs --label NAME, the new authenticator's name (for example --label phone2)")
	}
	if add && force {
		return usageErr("enroll: --add keeps the other authenticators and --force replaces them all; give one of them")
	}
	return nil
}

// canAdd says, before a secret is shown, why an authenticator labelled
// label cannot be added to a user whose authenticators have labels.
func canAdd(user string, labels []string, label string) error {
	switch {
	case slices.Contains(labels, label):
		return addErr(user, label, account.ErrLabelTaken)
	case len(labels) >= keystore.MaxAuthenticators:
		return addErr(user, label, account.ErrTooMany)
	}
	return nil
}

func addErr(user, label string, err error) error {
	if errors.Is(err, account.ErrLabelTaken) {
		return withHint(deniedErr("%s has an authenticator labelled %s already; nothing was changed", user, label),
			"choose another --label, or remove that one first with otpgate reset --user "+user+" --label "+label)
	}
	return withHint(deniedErr("%s has %d authenticators, the most otpgate keeps; nothing was changed", user, keystore.MaxAuthenticators),
		"remove one first with otpgate reset --user "+user+" --label LABEL (otpgate status lists them)")
}

func labelOrDefault(label string) string {
	if label == "" {
		return keystore.DefaultLabel
	}
	return label
}

// confirm asks for a code from the app until one matches.
func confirm(e *env, out io.Writer, en *account.Enrollment) (string, error) {
	for try := 1; try <= confirmTries; try++ {
		fmt.Fprintf(out, "Enter the %d-digit code the app shows: ", en.Params.Digits)
		line, err := readLine(e.stdin)
		if err != nil {
			fmt.Fprintln(out)
			return "", deniedErr("no code was entered; nothing was saved")
		}
		code := strings.TrimSpace(line)
		if _, ok := e.mgr.CheckCode(en, code); ok {
			return code, nil
		}
		fmt.Fprintf(out, "That code does not match. Check the app's clock and the entry you scanned.\n")
	}
	return "", withHint(deniedErr("no matching code after %d tries; nothing was saved", confirmTries),
		"run enroll again, or check that the phone's time is set automatically")
}

func printCodes(w io.Writer, codes []string) {
	if len(codes) == 0 {
		return
	}
	fmt.Fprintf(w, "\nBackup codes (each works once in place of a code; keep them safe, they are not shown again):\n\n")
	for _, c := range codes {
		fmt.Fprintf(w, "    %s\n", c)
	}
	fmt.Fprintln(w)
}

// writePNG writes the QR code to a new file: it holds the secret, so it
// is created 0600 and never written through a link or over a file.
func writePNG(path string, matrix [][]bool) error {
	fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		if errors.Is(err, unix.EEXIST) {
			return usageErr("--qr-png %s exists; choose a new file name (it will hold the secret)", path)
		}
		return usageErr("--qr-png %s: %v", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	err = qrterm.PNG(f, matrix, 8)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // keep the & in key URIs readable
	return enc.Encode(v)
}

// knownUser refuses to enroll a name the system does not know (getent
// passwd: /etc/passwd, LDAP, SSSD, ...): most often a typo, whose secret
// nobody could use. --force enrolls it anyway, for an account that will
// exist later.
func knownUser(name string) error {
	_, err := nss.Default.LookupUser(name)
	if errors.Is(err, nss.ErrNotFound) {
		return withHint(deniedErr("%s is not a user this system knows (getent passwd %s); nothing was changed", name, name),
			"check the name; to enroll an account that will exist later, add --force")
	}
	if err != nil {
		return withHint(deniedErr("cannot tell whether %s exists: %v; nothing was changed", name, err),
			"fix the lookup (getent passwd "+name+"), or add --force to enroll the name as it is")
	}
	return nil
}
