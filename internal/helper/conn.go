package helper

import (
	"fmt"
	"io"
	"os"
	"syscall"
	"time"
)

// Conn is one end of the socket between the helper and its client: an
// *os.File from SocketFile, or a net.Conn. Every read and write has a
// deadline, so neither side can hang the other.
type Conn interface {
	io.Reader
	io.Writer
	SetReadDeadline(time.Time) error
	SetWriteDeadline(time.Time) error
}

// SocketFile returns the socket fd as a file whose reads and writes honour
// deadlines (Go polls a non-blocking descriptor). It is used instead of
// the net package, which the helper does not link: every package it links
// is start-up time at every login.
func SocketFile(fd int, name string) (*os.File, error) {
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil || typ != syscall.SOCK_STREAM {
		return nil, fmt.Errorf("%s is not a stream socket", name)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return os.NewFile(uintptr(fd), name), nil
}
