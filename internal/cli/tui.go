package cli

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Exit codes, as documented in otpgate --help.
const (
	exitOK     = 0 // success, or a code accepted
	exitDenied = 1 // a code denied, or a request refused
	exitUsage  = 2 // a usage, config or store error
)

// exitError carries an exit code and a one-line message.
type exitError struct {
	code int
	msg  string
	hint string
}

func (e *exitError) Error() string { return e.msg }

func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, msg: fmt.Sprintf(format, args...)}
}

func deniedErr(format string, args ...any) error {
	return &exitError{code: exitDenied, msg: fmt.Sprintf(format, args...)}
}

func withHint(err error, hint string) error {
	var e *exitError
	if errors.As(err, &e) {
		c := *e
		c.hint = hint
		return &c
	}
	return &exitError{code: exitUsage, msg: err.Error(), hint: hint}
}

// report prints err to stderr as "otpgate: error: …" (and a hint line),
// and returns its exit code. Errors that are not exitErrors are config or
// store errors: exit 2.
func report(stderr io.Writer, err error) int {
	if err == nil {
		return exitOK
	}
	var e *exitError
	if !errors.As(err, &e) {
		e = &exitError{code: exitUsage, msg: err.Error()}
	}
	fmt.Fprintf(stderr, "otpgate: error: %s\n", oneLine(e.msg))
	if e.hint != "" {
		fmt.Fprintf(stderr, "otpgate: hint: %s\n", oneLine(e.hint))
	}
	return e.code
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// maxLine bounds what is read as one answer: a code, a backup code, a
// password never needs more.
const maxLine = 1024

// readLine reads one line from r, without its line ending. io.EOF means no
// input at all.
func readLine(r *bufio.Reader) (string, error) {
	var b []byte
	for {
		c, err := r.ReadByte()
		if err == io.EOF && len(b) > 0 {
			break
		}
		if err != nil {
			return "", err
		}
		if c == '\n' {
			break
		}
		if len(b) >= maxLine {
			return "", errors.New("input line too long")
		}
		b = append(b, c)
	}
	return strings.TrimRight(string(b), "\r"), nil
}
