// Package authlog writes otpgate's one line per attempt to syslog
// (facility authpriv, where sshd, sudo and pam_unix log too).
//
// A host without a syslog socket (many containers have no /dev/log) is not
// a reason to deny a login: the line then goes to the fallback writer, or
// nowhere.
package authlog

import (
	"fmt"
	"io"
	"log/syslog"
	"strings"
)

// Logger writes attempt lines. The zero value drops them.
type Logger struct {
	w        *syslog.Writer
	fallback io.Writer
}

// Open connects to the local syslog as tag ("otpgate"). fallback, which
// may be nil, receives the lines when there is no syslog.
func Open(tag string, fallback io.Writer) *Logger {
	return dial("", "", tag, fallback)
}

// dial is Open with a given syslog address ("" for the local default).
func dial(network, addr, tag string, fallback io.Writer) *Logger {
	w, err := syslog.Dial(network, addr, syslog.LOG_AUTHPRIV|syslog.LOG_INFO, tag)
	if err != nil {
		w = nil
	}
	return &Logger{w: w, fallback: fallback}
}

// Info logs a routine line (an accepted code, an admin action).
func (l *Logger) Info(line string) { l.write(false, line) }

// Notice logs a line an administrator may need to act on (a denial, a
// lockout, a refused file).
func (l *Logger) Notice(line string) { l.write(true, line) }

func (l *Logger) write(notice bool, line string) {
	if l == nil {
		return
	}
	line = clean(line)
	if l.w != nil {
		var err error
		if notice {
			err = l.w.Notice(line)
		} else {
			err = l.w.Info(line)
		}
		if err == nil {
			return
		}
	}
	if l.fallback != nil {
		fmt.Fprintf(l.fallback, "otpgate: log: %s\n", line)
	}
}

// Close closes the syslog connection.
func (l *Logger) Close() {
	if l != nil && l.w != nil {
		l.w.Close()
	}
}

// clean keeps a line on one line: control characters from a remote host
// name or a service name cannot forge a second log entry.
func clean(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return '?'
		}
		return r
	}, s)
}
