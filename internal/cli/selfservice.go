package cli

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/qrterm"
	"github.com/otpgate/otpgate/internal/totp"
)

// selfServiceCommands are the commands a normal user runs through the
// setuid helper, for their own account only.
var selfServiceCommands = map[string]bool{"status": true, "enroll": true, "backup-codes": true}

// runSelfService runs status, enroll or backup-codes for a user who is
// not root: the store is root's, so the command execs otpgate-helper (at
// helper.InstalledPath, fixed at build time) and relays its prompts,
// exactly as the PAM module does. The helper decides whom it serves from
// the real uid; this side only shows what it sends.
func runSelfService(e *env, stdin io.Reader, name string, args []string) error {
	fs := newFlags(name)
	userName := fs.String("user", "", "")
	asJSON := fs.Bool("json", false, "")
	var qrMode, qrPNG *string
	var noConfirm, force, add *bool
	var label *string
	if name == "enroll" {
		qrMode = fs.String("qr", "utf8", "")
		qrPNG = fs.String("qr-png", "", "")
		noConfirm = fs.Bool("no-confirm", false, "")
		force = fs.Bool("force", false, "")
		add = fs.Bool("add", false, "")
		label = fs.String("label", "", "")
	}
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	me, err := targetUser("")
	if err != nil {
		return err
	}
	if *userName != "" && *userName != me {
		return withHint(deniedErr("you can only manage your own account (%s)", me), "ask an administrator, or run it as root")
	}
	req := protocol.Request{Op: name, User: me, Service: "otpgate"}
	ui := &selfUI{e: e, stdin: stdin, out: e.stdout, asJSON: *asJSON}
	if name == "enroll" {
		if *qrMode != "utf8" && *qrMode != "ansi" && *qrMode != "none" {
			return usageErr("enroll: --qr %q: use utf8, ansi or none", *qrMode)
		}
		if *force {
			return withHint(usageErr("enroll: --force is for root"), "without it, otpgate asks for a code of your current secret before replacing it")
		}
		if err := checkAddFlags(*add, false, *label); err != nil {
			return err
		}
		if *noConfirm {
			req.Args = append(req.Args, helper.ArgNoConfirm)
		}
		if *add {
			req.Args = append(req.Args, helper.ArgAdd)
		}
		if *label != "" {
			req.Args = append(req.Args, helper.ArgLabel+*label)
		}
		ui.label = *label
		ui.qrMode, ui.qrPNG = *qrMode, *qrPNG
		if *asJSON {
			ui.out = e.stderr
		}
	}
	verdict, err := helper.Reach(helper.SocketPath, helper.InstalledPath, req, ui)
	if errors.Is(err, helper.ErrNoDaemon) {
		return withHint(fmt.Errorf("otpgate %s as a normal user needs the otpgate-helper daemon or the setuid launcher: %w", name, err),
			"start the daemon (systemctl enable --now otpgate-helper.socket), install otpgate with make install as root, or run the command with sudo")
	}
	if err != nil {
		return err
	}
	if ui.err != nil {
		return ui.err
	}
	switch verdict {
	case protocol.ResultSuccess:
		return ui.finish(name)
	case protocol.ResultServiceErr:
		return usageErr("otpgate-helper refused the request%s", ui.lastError())
	}
	return deniedErr("denied%s", ui.lastError())
}

// selfUI shows what the helper sends on the terminal and answers its
// prompts from standard input.
type selfUI struct {
	e      *env
	stdin  io.Reader
	out    io.Writer // prompts and the QR code; stderr with --json
	asJSON bool
	qrMode string
	qrPNG  string
	label  string // enroll --label
	errs   []string
	data   helper.Data
	err    error // from showing data
}

func (u *selfUI) Prompt(text string, echo bool) (string, error) {
	fmt.Fprint(u.out, text)
	if !echo {
		if f, ok := u.stdin.(*os.File); ok {
			if restore, err := noEcho(int(f.Fd())); err == nil {
				defer func() { restore(); fmt.Fprintln(u.out) }()
			}
		}
	}
	line, err := readLine(u.e.stdin)
	if err != nil {
		fmt.Fprintln(u.out)
		return "", err
	}
	return strings.TrimSpace(line), nil
}

// noEcho turns off echo on the terminal fd, if it is one.
func noEcho(fd int) (func(), error) {
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, err
	}
	t := *old
	t.Lflag &^= unix.ECHO
	t.Lflag |= unix.ICANON | unix.ECHONL
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &t); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

func (u *selfUI) Message(text string, isError bool) {
	if isError {
		u.errs = append(u.errs, text)
		return
	}
	fmt.Fprintf(u.e.stderr, "otpgate: %s\n", oneLine(text))
}

func (u *selfUI) lastError() string {
	if len(u.errs) == 0 {
		return ""
	}
	// All of them, in order: the reason, then what it meant.
	return ": " + strings.Join(u.errs, "; ")
}

func (u *selfUI) Data(d helper.Data) error {
	if d.User != "" {
		u.data.User = d.User
	}
	if d.Status != nil {
		u.data.Status, u.data.MaxFailures = d.Status, d.MaxFailures
	}
	if d.BackupCodes != nil {
		u.data.BackupCodes = d.BackupCodes
	}
	if d.Added != "" {
		u.data.Added = d.Added
	}
	if d.URI != "" {
		u.data.URI, u.data.Secret, u.data.Digits = d.URI, d.Secret, d.Digits
		u.err = u.showSecret()
	}
	return u.err
}

// showSecret draws the new secret as enroll does for root.
func (u *selfUI) showSecret() error {
	matrix, err := qrterm.Matrix(u.data.URI)
	if err != nil {
		return err
	}
	if u.qrPNG != "" {
		if err := writePNG(u.qrPNG, matrix); err != nil {
			return err
		}
	}
	if u.qrMode != "none" {
		fmt.Fprintf(u.out, "Scan this QR code with your authenticator app:\n\n")
		if u.qrMode == "ansi" {
			fmt.Fprint(u.out, qrterm.ANSI(matrix))
		} else {
			fmt.Fprint(u.out, qrterm.UTF8(matrix))
		}
		fmt.Fprintln(u.out)
	}
	if !u.asJSON {
		fmt.Fprintf(u.out, "Or add it by hand: %s\nURI: %s\n\n", totp.GroupKey(u.data.Secret), u.data.URI)
	}
	return nil
}

// finish prints the result of a successful operation.
func (u *selfUI) finish(name string) error {
	d := u.data
	switch name {
	case "status":
		if d.Status == nil {
			return errors.New("otpgate-helper sent no status")
		}
		if u.asJSON {
			return printJSON(u.e.stdout, d.Status)
		}
		u.e.cfg.MaxFailures = d.MaxFailures
		printStatus(u.e, *d.Status)
	case "enroll":
		if u.asJSON {
			codes := d.BackupCodes
			if codes == nil {
				codes = []string{}
			}
			return printJSON(u.e.stdout, struct {
				User        string   `json:"user"`
				Label       string   `json:"label"`
				URI         string   `json:"uri"`
				Secret      string   `json:"secret"`
				BackupCodes []string `json:"backup_codes"`
			}{d.User, labelOrDefault(u.label), d.URI, d.Secret, codes})
		}
		if d.Added != "" {
			fmt.Fprintf(u.out, "Added authenticator %s to %s; the others and the backup codes keep working.\n", d.Added, d.User)
			return nil
		}
		fmt.Fprintf(u.out, "Enrolled %s.\n", d.User)
		printCodes(u.out, d.BackupCodes)
	case "backup-codes":
		if u.asJSON {
			return printJSON(u.e.stdout, struct {
				User        string   `json:"user"`
				BackupCodes []string `json:"backup_codes"`
			}{d.User, d.BackupCodes})
		}
		printCodes(u.e.stdout, d.BackupCodes)
	}
	return nil
}
