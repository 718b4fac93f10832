package sshcheck

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	"github.com/otpgate/otpgate/internal/helper"
)

// ui is the helper's conversation for one session: one prompt, answered
// from the terminal or from OTPGATE_CODE; messages to standard error.
type ui struct {
	answer func() (string, error) // the one answer
	stderr io.Writer

	mu     sync.Mutex
	asked  bool
	cause  error    // why the prompt got no answer
	errors []string // the helper's error lines
}

// errSecondPrompt: sshcheck answers one prompt per session.
var errSecondPrompt = errors.New("otpgate-helper asked a second question")

func (u *ui) Prompt(string, bool) (string, error) {
	u.mu.Lock()
	if u.asked {
		u.cause = errSecondPrompt
		u.mu.Unlock()
		return "", errSecondPrompt
	}
	u.asked = true
	u.mu.Unlock()
	a, err := u.answer()
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
