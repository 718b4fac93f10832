package sshcheck

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/otpgate/otpgate/internal/helper"
)

// ui is the helper's conversation for one session: one prompt for the
// code, answered from the terminal or from OTPGATE_CODE, and, with a
// terminal, the prompts of first-login enrollment; messages to standard
// error.
type ui struct {
	answer func() (string, error) // the answer to the code prompt
	// show asks any other prompt of the helper, shown as the helper wrote
	// it (first-login enrollment: the QR code, the backup codes); nil
	// without a terminal.
	show     func(text string) (string, error)
	prompted func() // called as each prompt starts (the watchdog); may be nil
	stderr   io.Writer

	mu     sync.Mutex
	asked  int      // prompts so far
	cause  error    // why a prompt got no answer
	errors []string // the helper's error lines
}

// codePrompts holds the helper's prompt for a code of the stored secret
// (self mode's verify and trusted mode's default are the same text):
// sshcheck asks it with its own text, which names the user and the host.
var codePrompts = map[string]bool{helper.DefaultPrompt: true}

// maxPrompts bounds the questions of one session: first-login enrollment
// asks for a code of the new secret up to three times, then shows the
// backup codes.
const maxPrompts = 4

// errSecondPrompt: without a terminal, sshcheck answers one prompt per
// session; with one, at most maxPrompts.
var errSecondPrompt = errors.New("otpgate-helper asked a second question")

func (u *ui) Prompt(text string, _ bool) (string, error) {
	u.mu.Lock()
	u.asked++
	n := u.asked
	show := u.show
	if u.cause == nil && (n > maxPrompts || (!codePrompts[text] && show == nil) || (codePrompts[text] && n > 1)) {
		u.cause = errSecondPrompt
	}
	cause := u.cause
	u.mu.Unlock()
	if cause != nil {
		return "", cause
	}
	if u.prompted != nil {
		u.prompted()
	}
	var a string
	var err error
	if codePrompts[text] {
		a, err = u.answer()
	} else {
		a, err = show(text)
	}
	if err != nil {
		u.mu.Lock()
		u.cause = err
		u.mu.Unlock()
		return "", err
	}
	return strings.TrimSpace(a), nil
}

func (u *ui) Message(text string, isError bool) {
	line := strings.Join(strings.Fields(text), " ")
	if isError {
		u.mu.Lock()
		u.errors = append(u.errors, line)
		u.mu.Unlock()
		return
	}
	fmt.Fprintf(u.stderr, "otpgate: %s\n", line)
}

// Data: the verify operation sends none.
func (u *ui) Data(helper.Data) error {
	return errors.New("otpgate-helper sent data to sshcheck")
}

// noAnswer returns why the prompt got no answer, if it did not.
func (u *ui) noAnswer() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cause
}

// lastError returns the helper's last error line, or "".
func (u *ui) lastError() string {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.errors) == 0 {
		return ""
	}
	return u.errors[len(u.errors)-1]
}
