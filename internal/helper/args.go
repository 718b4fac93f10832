package helper

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// pamArgs are the pam.d arguments, as the module passed them on.
type pamArgs struct {
	nullok      bool
	debug       bool
	forwardPass bool
	firstLogin  bool   // first_login: this stack checks a first factor before otpgate
	config      string // "" means config.DefaultPath
	prompt      string // "" means the default prompt
	timeout     time.Duration
}

// parseArgs checks every argument, as the module does: an unknown one is
// an error, never skipped.
func parseArgs(args []string) (pamArgs, error) {
	a := pamArgs{timeout: DefaultTimeout}
	for _, arg := range args {
		k, v, hasValue := strings.Cut(arg, "=")
		switch {
		case arg == "nullok":
			a.nullok = true
		case arg == "debug":
			a.debug = true
		case arg == "forward_pass":
			a.forwardPass = true
		case arg == ArgFirstLogin:
			a.firstLogin = true
		case hasValue && k == "config":
			if !filepath.IsAbs(v) || filepath.Clean(v) != v {
				return a, fmt.Errorf("config=%q is not a clean absolute path", v)
			}
			a.config = v
		case hasValue && (k == "helper" || k == "socket"):
			// The module's business.
		case arg == "mode=auto" || arg == "mode=daemon" || arg == "mode=exec":
			// The module's business.
		case hasValue && k == "prompt":
			a.prompt = v
		case hasValue && k == "timeout":
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || time.Duration(n)*time.Second > MaxTimeout {
				return a, fmt.Errorf("timeout=%q is not 1 to %d seconds", v, int(MaxTimeout/time.Second))
			}
			a.timeout = time.Duration(n) * time.Second
		default:
			return a, fmt.Errorf("unknown argument %q", arg)
		}
	}
	return a, nil
}
