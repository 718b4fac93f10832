package gaimport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/keystore"
)

// Defaults of google-authenticator-libpam when a file does not say.
const (
	DefaultStepSize   = 30
	DefaultWindowSize = 3
	// Digits is the code length: google-authenticator has no other.
	Digits = 6
)

// ErrHOTP means the file is for counter-based codes, which otpgate does
// not do.
var ErrHOTP = errors.New("it holds a counter-based (HOTP) secret; otpgate does time-based codes (TOTP) only")

// File is what a google-authenticator file holds.
type File struct {
	Secret     []byte
	StepSize   int      // seconds; STEP_SIZE, else DefaultStepSize
	WindowSize int      // codes accepted in all; WINDOW_SIZE, else DefaultWindowSize
	Scratch    []string // the 8-digit scratch codes, in file order
	// RateLimit is the value of RATE_LIMIT ("3 30"), without the
	// timestamps after it; "" when absent.
	RateLimit string
	// DisallowReuse says DISALLOW_REUSE is set; UsedSteps are the steps
	// it lists as used.
	DisallowReuse bool
	UsedSteps     []int64
	// Ignored names other options found (TIME_SKEW, ...), not carried
	// over.
	Ignored []string
}

// StepsEachSide is how many steps on either side of now otpgate must
// accept to accept every code google-authenticator did: WINDOW_SIZE w
// accepts the steps from -(w-1)/2 to w/2.
func (f File) StepsEachSide() int {
	return f.WindowSize / 2
}

// Parse reads the content of a google-authenticator file. Errors never
// quote a line: any line may hold the secret or a scratch code.
func Parse(data []byte) (File, error) {
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	if len(lines) == 0 || strings.TrimSpace(lines[0]) == "" {
		return File{}, errors.New("the first line holds no secret")
	}
	secret, err := keystore.DecodeSecret(strings.TrimSpace(lines[0]))
	if err != nil {
		return File{}, fmt.Errorf("line 1: %w", err)
	}
	f := File{Secret: secret, StepSize: DefaultStepSize, WindowSize: DefaultWindowSize}
	for i, line := range lines[1:] {
		n := i + 2
		line = strings.TrimSpace(line)
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "\""):
			if err := f.option(strings.Fields(strings.TrimPrefix(line, "\""))); err != nil {
				return File{}, fmt.Errorf("line %d: %w", n, err)
			}
		default:
			code, ok := backupcode.NormalizeScratch(line)
			if !ok || code != line {
				return File{}, fmt.Errorf("line %d: neither an option nor an 8-digit scratch code", n)
			}
			f.Scratch = append(f.Scratch, code)
		}
	}
	return f, nil
}

// option reads one `" NAME VALUE...` line.
func (f *File) option(w []string) error {
	if len(w) == 0 {
		return nil // a bare comment
	}
	name, args := w[0], w[1:]
	number := func() (int, error) {
		if len(args) != 1 {
			return 0, fmt.Errorf("%s needs one number", name)
		}
		v, err := strconv.Atoi(args[0])
		if err != nil {
			return 0, fmt.Errorf("%s: not a number", name)
		}
		return v, nil
	}
	var err error
	switch name {
	case "HOTP_COUNTER":
		return ErrHOTP
	case "TOTP_AUTH":
	case "STEP_SIZE":
		if f.StepSize, err = number(); err != nil {
			return err
		}
		if f.StepSize < 1 {
			return fmt.Errorf("STEP_SIZE %d is not a step size", f.StepSize)
		}
	case "WINDOW_SIZE":
		if f.WindowSize, err = number(); err != nil {
			return err
		}
		if f.WindowSize < 1 {
			return fmt.Errorf("WINDOW_SIZE %d is not a window", f.WindowSize)
		}
	case "RATE_LIMIT":
		if len(args) < 2 {
			return errors.New("RATE_LIMIT needs a count and an interval")
		}
		f.RateLimit = args[0] + " " + args[1]
	case "DISALLOW_REUSE":
		f.DisallowReuse = true
		for _, a := range args {
			s, err := strconv.ParseInt(a, 10, 64)
			if err != nil || s < 0 {
				return errors.New("DISALLOW_REUSE: a used step is not a number")
			}
			f.UsedSteps = append(f.UsedSteps, s)
		}
	default:
		f.Ignored = append(f.Ignored, name[:min(len(name), 32)])
	}
	return nil
}
