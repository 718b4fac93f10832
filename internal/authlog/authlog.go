// Package authlog writes otpgate's one line per attempt to syslog
// (facility authpriv, where sshd, sudo and pam_unix log too).
//
// It speaks the local syslog protocol itself, a datagram to /dev/log,
// rather than through log/syslog: that package brings in the whole net
// stack, and the helper starts once per login, so every package it links
// is start-up time.
//
// A host without a syslog socket (many containers have no /dev/log) is not
// a reason to deny a login: the line then goes to the fallback writer, or
// nowhere. Nor is a syslog daemon that stopped reading: a line that cannot
// be sent within sendWait is dropped rather than hold a login.
package authlog

import (
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultSocket is the local syslog socket.
const DefaultSocket = "/dev/log"

// sendWait bounds the wait for a full syslog socket.
const sendWait = 200 * time.Millisecond

// Priorities: facility authpriv (10) times 8, plus the severity.
const (
	priInfo   = 10*8 + 6
	priNotice = 10*8 + 5
)

// Logger writes attempt lines. A nil Logger drops them.
type Logger struct {
	fd       int // -1 when there is no syslog
	tag      string
	fallback io.Writer
}

// Open connects to the local syslog as tag ("otpgate"). fallback, which
// may be nil, receives the lines when there is no syslog.
func Open(tag string, fallback io.Writer) *Logger {
	return Dial(DefaultSocket, tag, fallback)
}

// Dial is Open with another socket path (a path where nothing listens
// sends every line to fallback).
func Dial(path, tag string, fallback io.Writer) *Logger {
	l := &Logger{fd: -1, tag: tag, fallback: fallback}
	for _, typ := range []int{unix.SOCK_DGRAM, unix.SOCK_STREAM} {
		fd, err := unix.Socket(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			continue
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			unix.Close(fd)
			continue
		}
		l.fd = fd
		break
	}
	return l
}

// Info logs a routine line (an accepted code, an admin action).
func (l *Logger) Info(line string) { l.write(priInfo, line) }

// Notice logs a line an administrator may need to act on (a denial, a
// lockout, a refused file).
func (l *Logger) Notice(line string) { l.write(priNotice, line) }

func (l *Logger) write(pri int, line string) {
	if l == nil {
		return
	}
	line = clean(line)
	if l.fd >= 0 {
		msg := fmt.Sprintf("<%d>%s %s[%d]: %s\n", pri, time.Now().Format(time.Stamp), l.tag, os.Getpid(), line)
		if l.send([]byte(msg)) {
			return
		}
	}
	if l.fallback != nil {
		fmt.Fprintf(l.fallback, "otpgate: log: %s\n", line)
	}
}

// send writes one message, waiting at most sendWait for room.
func (l *Logger) send(msg []byte) bool {
	deadline := time.Now().Add(sendWait)
	for {
		n, err := unix.Write(l.fd, msg)
		if err == nil && n == len(msg) {
			return true
		}
		if err != unix.EAGAIN && err != unix.EINTR {
			return false
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		unix.Poll([]unix.PollFd{{Fd: int32(l.fd), Events: unix.POLLOUT}}, int(left/time.Millisecond)+1)
	}
}

// Close closes the syslog connection.
func (l *Logger) Close() {
	if l != nil && l.fd >= 0 {
		unix.Close(l.fd)
		l.fd = -1
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
