package doctor

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// PAMLine is one rule of a resolved PAM stack.
type PAMLine struct {
	File    string
	Line    int
	Type    string // auth, account, password, session
	Control string // required, sufficient, [success=done ...]
	Module  string // as written: pam_unix.so or a path
	Args    []string
}

// IsOtpgate reports whether the rule runs pam_otpgate.
func (l PAMLine) IsOtpgate() bool {
	return strings.TrimSuffix(filepath.Base(l.Module), ".so") == "pam_otpgate"
}

// Where is file:line.
func (l PAMLine) Where() string { return fmt.Sprintf("%s:%d", l.File, l.Line) }

// maxDepth bounds include chains (and loops).
const maxDepth = 16

// AuthStack returns the auth rules of service in dir (/etc/pam.d),
// following @include, include and substack, in order.
func AuthStack(dir, service string) ([]PAMLine, error) {
	return Stack(dir, service, "auth")
}

// Stack returns the rules of service in dir whose type is one of types,
// in order. @include brings in every rule of the named file; include and
// substack bring in the rules of their own type, as Linux-PAM does.
func Stack(dir, service string, types ...string) ([]PAMLine, error) {
	return stack(dir, service, types, 0)
}

func stack(dir, service string, types []string, depth int) ([]PAMLine, error) {
	if depth > maxDepth {
		return nil, fmt.Errorf("%s: includes nested deeper than %d", service, maxDepth)
	}
	path := filepath.Join(dir, filepath.Base(service))
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []PAMLine
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if fields[0] == "@include" && len(fields) > 1 {
			sub, err := stack(dir, fields[1], types, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		typ := strings.TrimPrefix(fields[0], "-")
		if !slices.Contains(types, typ) || len(fields) < 3 {
			continue
		}
		// A [ ... ] control may contain spaces.
		control, rest := fields[1], fields[2:]
		if strings.HasPrefix(control, "[") && !strings.HasSuffix(control, "]") {
			for len(rest) > 0 {
				control += " " + rest[0]
				rest = rest[1:]
				if strings.HasSuffix(control, "]") {
					break
				}
			}
		}
		if len(rest) == 0 {
			continue
		}
		if control == "include" || control == "substack" {
			sub, err := stack(dir, rest[0], []string{typ}, depth+1)
			if err != nil {
				return nil, err
			}
			out = append(out, sub...)
			continue
		}
		out = append(out, PAMLine{File: path, Line: n, Type: typ, Control: control, Module: rest[0], Args: rest[1:]})
	}
	return out, sc.Err()
}

// HasOtpgate reports whether a stack runs pam_otpgate.
func HasOtpgate(stack []PAMLine) bool {
	for _, l := range stack {
		if l.IsOtpgate() {
			return true
		}
	}
	return false
}

// CheckPAM checks how pam_otpgate sits in an auth stack: its verdict must
// count, and nothing before it may end the stack with success.
func CheckPAM(service string, stack []PAMLine) []Finding {
	var out []Finding
	for i, l := range stack {
		if !l.IsOtpgate() {
			continue
		}
		add := func(problem, fix string) {
			out = append(out, Finding{Check: "pam", Context: l.Where(), Problem: problem, Fix: fix})
		}
		switch {
		case l.Control == "optional":
			add(service+": pam_otpgate is optional: a wrong code does not stop the login",
				"use required (or requisite)")
		case l.Control == "sufficient":
			add(service+": pam_otpgate is sufficient: a right code alone skips the rest of the stack, and a wrong one is ignored",
				"use required, after the password module")
		}
		for _, p := range stack[:i] {
			if p.Control == "sufficient" || strings.Contains(p.Control, "success=done") {
				out = append(out, Finding{Check: "pam", Context: p.Where(),
					Problem: fmt.Sprintf("%s: %s (%s) can end the stack with success before pam_otpgate runs", service, p.Module, p.Control),
					Fix:     "put pam_otpgate before it, or make it required"})
			}
		}
	}
	return out
}
