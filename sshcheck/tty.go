package sshcheck

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Why a prompt got no answer.
var (
	errTimeout  = errors.New("timeout")
	errEOF      = errors.New("end of input")
	errCanceled = errors.New("canceled")
	errTooLong  = errors.New("the answer is too long")
)

// maxAnswer bounds one answer: a code or a backup code never needs more.
const maxAnswer = 1024

// terminal is the session's terminal, opened for one prompt with echo off.
// Reads wait with poll(2) on the terminal and on a pipe that cancel
// writes to, so a signal or the watchdog ends a prompt at once.
type terminal struct {
	fd      int
	old     *unix.Termios
	cancelR int
	cancelW int
	restore sync.Once
	closed  sync.Once
}

// openTerminal opens path (/dev/tty: the session's controlling terminal).
// A session without a terminal (ssh host cmd, scp, sftp) has no
// controlling terminal, and the open fails.
func openTerminal(path string) (*terminal, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("%s is not a terminal: %w", path, err)
	}
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_CLOEXEC|unix.O_NONBLOCK); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return &terminal{fd: fd, old: old, cancelR: p[0], cancelW: p[1]}, nil
}

// cancel ends a prompt that is waiting, or the next one, with errCanceled.
func (t *terminal) cancel() {
	unix.Write(t.cancelW, []byte{0})
}

// restoreMode puts the terminal back as it was, once.
func (t *terminal) restoreMode() {
	t.restore.Do(func() { unix.IoctlSetTermios(t.fd, unix.TCSETS, t.old) })
}

// close restores the terminal and closes it. Only once no prompt can be
// waiting on it: a closed descriptor's number may be reused.
func (t *terminal) close() {
	t.restoreMode()
	t.closed.Do(func() {
		unix.Close(t.fd)
		unix.Close(t.cancelR)
		unix.Close(t.cancelW)
	})
}

func (t *terminal) write(s string) {
	b := []byte(s)
	for len(b) > 0 {
		n, err := unix.Write(t.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n <= 0 {
			return
		}
		b = b[n:]
	}
}

// ask shows prompt, reads one line with echo off and returns it without
// its line ending. It gives up after timeout (errTimeout), on end of
// input (Ctrl-D: errEOF), a hangup, or cancel (errCanceled).
func (t *terminal) ask(prompt string, timeout time.Duration) (string, error) {
	noEcho := *t.old
	noEcho.Lflag &^= unix.ECHO
	noEcho.Lflag |= unix.ICANON | unix.ECHONL
	if err := unix.IoctlSetTermios(t.fd, unix.TCSETS, &noEcho); err != nil {
		return "", fmt.Errorf("turning off echo on the terminal: %w", err)
	}
	defer t.restoreMode()
	t.write(prompt)
	line, err := t.readLine(time.Now().Add(timeout))
	if err != nil {
		t.write("\n")
		clear(line)
		return "", err
	}
	s := string(line)
	clear(line)
	return s, nil
}

func (t *terminal) readLine(deadline time.Time) ([]byte, error) {
	line := make([]byte, 0, 64)
	buf := make([]byte, maxAnswer+1)
	defer clear(buf)
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return line, errTimeout
		}
		fds := []unix.PollFd{{Fd: int32(t.fd), Events: unix.POLLIN}, {Fd: int32(t.cancelR), Events: unix.POLLIN}}
		ms := int((left + time.Millisecond - 1) / time.Millisecond)
		n, err := unix.Poll(fds, ms)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return line, fmt.Errorf("waiting for the terminal: %w", err)
		}
		if n == 0 {
			continue // the deadline is checked above
		}
		if fds[1].Revents != 0 {
			return line, errCanceled
		}
		if fds[0].Revents&unix.POLLNVAL != 0 {
			return line, errCanceled
		}
		if fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) == 0 {
			continue
		}
		r, err := unix.Read(t.fd, buf)
		if err == unix.EINTR || err == unix.EAGAIN {
			continue
		}
		if err != nil {
			// A terminal that hung up reads EIO.
			return line, fmt.Errorf("%w (%v)", errEOF, err)
		}
		if r == 0 {
			return line, errEOF
		}
		for _, c := range buf[:r] {
			if c == '\n' || c == '\r' {
				return line, nil
			}
			if len(line) >= maxAnswer {
				return line, errTooLong
			}
			line = append(line, c)
		}
	}
}
