package helper

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/protocol"
)

// DefaultSocket is where the helper serves when it runs as a daemon; the
// PAM module and otpgate try it before they exec the helper.
const DefaultSocket = "/run/otpgate/helper.sock"

// Limits of serve mode.
const (
	// DefaultPerUID is how many connections one non-root uid may have at
	// once: a user's own status, enroll and a screen locker fit, and one
	// user opening hundreds cannot starve the others.
	DefaultPerUID = 4
	// DefaultMaxConns bounds the connections served at once, root's
	// included (each sshd, sudo or su login in progress is one).
	DefaultMaxConns = 512
	// DefaultShutdownWait is how long a stopping daemon lets the sessions in
	// progress finish before it exits; their clients then see the socket
	// close, which they take as a denial.
	DefaultShutdownWait = 5 * time.Second
)

// Server answers requests on a listening Unix socket, one request per
// connection, connections in parallel. Whom a connection is served for
// comes from the kernel (SO_PEERCRED: the peer's effective uid when it
// connected): uid 0 is trusted mode, any other uid self mode for that
// uid's own account. Nothing in the request can change that.
type Server struct {
	Options  Options // for every session; Caller is set per connection
	PerUID   int     // 0 means DefaultPerUID
	MaxConns int     // 0 means DefaultMaxConns
	// ShutdownWait is how long Serve lets sessions in progress finish
	// once its context ends; 0 means DefaultShutdownWait.
	ShutdownWait time.Duration

	mu       sync.Mutex
	byUID    map[uint32]int
	total    int
	refusing int
	active   sync.WaitGroup
}

// Serve accepts connections on the listening socket lfd until ctx is
// done, then waits at most ShutdownWait for the sessions in progress.
func (s *Server) Serve(ctx context.Context, lfd int) error {
	if err := syscall.SetNonblock(lfd, true); err != nil {
		return fmt.Errorf("listening socket: %w", err)
	}
	l := os.NewFile(uintptr(lfd), "listening socket")
	defer l.Close()
	rc, err := l.SyscallConn()
	if err != nil {
		return err
	}
	go func() {
		<-ctx.Done()
		l.SetReadDeadline(time.Now()) // wakes the accept below
	}()
	for ctx.Err() == nil {
		var nfd int
		var aerr error
		err := rc.Read(func(fd uintptr) bool {
			nfd, _, aerr = unix.Accept4(int(fd), unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK)
			return !errors.Is(aerr, unix.EAGAIN)
		})
		if err != nil {
			break // the deadline set at shutdown, or the socket closed
		}
		if aerr != nil {
			if errors.Is(aerr, unix.EMFILE) || errors.Is(aerr, unix.ENFILE) || errors.Is(aerr, unix.ENOMEM) {
				s.Options.Log.Notice("helper: accept: " + aerr.Error() + "; pausing")
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		s.start(nfd)
	}
	done := make(chan struct{})
	go func() { s.active.Wait(); close(done) }()
	wait := s.ShutdownWait
	if wait == 0 {
		wait = DefaultShutdownWait
	}
	select {
	case <-done:
	case <-time.After(wait):
		s.Options.Log.Notice("helper: stopping with sessions in progress; their clients are denied")
	}
	return nil
}

// start serves one connection in its own goroutine, if its uid is within
// its limits.
func (s *Server) start(fd int) {
	cred, err := unix.GetsockoptUcred(fd, unix.SOL_SOCKET, unix.SO_PEERCRED)
	if err != nil {
		unix.Close(fd)
		return
	}
	c := os.NewFile(uintptr(fd), "client uid "+strconv.Itoa(int(cred.Uid)))
	if !s.admit(cred.Uid) {
		s.busy(c, cred.Uid)
		return
	}
	s.active.Add(1)
	go func() {
		defer s.active.Done()
		defer s.leave(cred.Uid)
		defer c.Close()
		o := s.Options
		o.Caller = int(cred.Uid)
		Run(c, o)
	}()
}

// maxBusy bounds the refusals being answered at once; past it a refused
// connection is closed without a word.
const maxBusy = 64

// busy refuses a connection over its uid's limit, in a goroutine of its
// own so that the accept loop never waits on a client. Nothing is asked or
// counted. The request is read first (for a second at most) so that the
// client's write does not fail before it reads the answer.
func (s *Server) busy(c *os.File, uid uint32) {
	s.mu.Lock()
	ok := s.refusing < maxBusy
	if ok {
		s.refusing++
	}
	s.mu.Unlock()
	if !ok {
		c.Close()
		return
	}
	go func() {
		defer func() {
			c.Close()
			s.mu.Lock()
			s.refusing--
			s.mu.Unlock()
		}()
		ses := &session{c: c, timeout: time.Second}
		if f, err := ses.read(); err == nil {
			clear(f.Payload)
		}
		ses.fail("otpgate-helper is busy with other requests of uid %d; try again", uid)
		ses.send(protocol.TypeResult, protocol.ResultAuthErr)
		s.Options.Log.Notice(authlog.Fields("helper", "busy", "uid", strconv.Itoa(int(uid))))
	}()
}

func (s *Server) admit(uid uint32) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byUID == nil {
		s.byUID = map[uint32]int{}
	}
	perUID, max := s.PerUID, s.MaxConns
	if perUID == 0 {
		perUID = DefaultPerUID
	}
	if max == 0 {
		max = DefaultMaxConns
	}
	if s.total >= max || (uid != 0 && s.byUID[uid] >= perUID) {
		return false
	}
	s.total++
	s.byUID[uid]++
	return true
}

func (s *Server) leave(uid uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if s.byUID[uid]--; s.byUID[uid] == 0 {
		delete(s.byUID, uid)
	}
}

// Listen creates the listening socket at path, mode 0666 (every local
// user may ask about their own account), in a directory that must exist,
// belong to root and not be writable by others. A socket left at path by
// a daemon that died is replaced; anything else there is an error.
func Listen(path string) (int, error) {
	dir := filepath.Dir(path)
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return -1, fmt.Errorf("listen: %s: %w; create it root-owned, mode 0755", dir, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return -1, fmt.Errorf("listen: %s must be a directory owned by root and not group- or world-writable", dir)
	}
	if err := unix.Lstat(path, &st); err == nil {
		if st.Mode&unix.S_IFMT != unix.S_IFSOCK {
			return -1, fmt.Errorf("listen: %s exists and is not a socket; remove it", path)
		}
		if err := unix.Unlink(path); err != nil {
			return -1, fmt.Errorf("listen: removing the old socket %s: %w", path, err)
		}
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("listen: %w", err)
	}
	// Created 0666 whatever the umask, then made so explicitly.
	old := unix.Umask(0)
	err = unix.Bind(fd, &unix.SockaddrUnix{Name: path})
	unix.Umask(old)
	if err == nil {
		err = unix.Chmod(path, 0o666)
	}
	if err == nil {
		err = unix.Listen(fd, 128)
	}
	if err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("listen: %s: %w", path, err)
	}
	return fd, nil
}

// ListenFDs returns the listening socket systemd passed (socket
// activation: LISTEN_PID is this process and LISTEN_FDS is 1, the socket
// is fd 3), or -1 when there is none. The variables are removed.
func ListenFDs() (int, error) {
	pid, fds := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_PID")
	os.Unsetenv("LISTEN_FDS")
	os.Unsetenv("LISTEN_FDNAMES")
	if pid == "" && fds == "" {
		return -1, nil
	}
	if pid != strconv.Itoa(os.Getpid()) {
		return -1, fmt.Errorf("LISTEN_PID=%q is not this process (%d)", pid, os.Getpid())
	}
	if fds != "1" {
		return -1, fmt.Errorf("LISTEN_FDS=%q: the socket unit must pass exactly one socket", fds)
	}
	const fd = 3
	typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
	if err != nil || typ != unix.SOCK_STREAM {
		return -1, fmt.Errorf("fd 3 from systemd is not a stream socket")
	}
	unix.CloseOnExec(fd)
	return fd, nil
}
