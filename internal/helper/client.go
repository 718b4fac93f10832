package helper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/otpgate/otpgate/internal/protocol"
)

// InstalledPath is where make install puts otpgate-launch-helper, the
// setuid-root launcher through which a normal user reaches the helper;
// otpgate (and sshcheck) exec it from there. The helper itself is not
// setuid. Only the build changes it (the Makefile sets it from PREFIX with
// -ldflags -X, and so do tests); no flag or environment variable can.
var InstalledPath = "/usr/local/libexec/otpgate/otpgate-launch-helper"

// UI is what a client shows and asks: otpgate's terminal, or a test. A
// UI that also has a SetAuthtok(string) error method accepts set-authtok
// frames; any other UI treats one as a protocol error.
type UI interface {
	// Prompt asks the person; an error sends "conversation failed".
	Prompt(text string, echo bool) (string, error)
	// Message shows a line; isError for an error line.
	Message(text string, isError bool)
	// Data receives a Data frame.
	Data(d Data) error
}

// ClientTimeout is how long a client waits for the helper's next frame:
// longer than the helper waits for an answer, so the helper gives up first.
const ClientTimeout = SelfTimeout + 15*time.Second

// Converse sends req on c and relays the helper's frames to ui until the
// verdict, which it returns. Each wait for a frame is bounded by timeout.
func Converse(c Conn, req protocol.Request, ui UI, timeout time.Duration) (string, error) {
	p, err := req.Encode()
	if err != nil {
		return "", err
	}
	if err := write(c, protocol.TypeRequest, p, timeout); err != nil {
		return "", fmt.Errorf("otpgate-helper: sending the request: %w", err)
	}
	for {
		if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
			return "", err
		}
		f, err := protocol.ReadFrame(c)
		if err != nil {
			return "", fmt.Errorf("otpgate-helper: %w", err)
		}
		switch f.Type {
		case protocol.TypePromptEchoOff, protocol.TypePromptEchoOn:
			ans, err := ui.Prompt(string(f.Payload), f.Type == protocol.TypePromptEchoOn)
			t, b := protocol.TypeAnswer, []byte(ans)
			if err != nil {
				t, b = protocol.TypeConvFailed, nil
			}
			err = write(c, t, b, timeout)
			clear(b)
			if err != nil {
				// The helper may have given up waiting: its verdict
				// can still be read.
				if f, rerr := protocol.ReadFrame(c); rerr == nil && f.Type == protocol.TypeResult {
					return verdictOf(f)
				}
				return "", fmt.Errorf("otpgate-helper: sending the answer: %w", err)
			}
		case protocol.TypeInfo, protocol.TypeError:
			ui.Message(string(f.Payload), f.Type == protocol.TypeError)
		case protocol.TypeData:
			var d Data
			dec := json.NewDecoder(bytes.NewReader(f.Payload))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&d); err != nil {
				return "", fmt.Errorf("otpgate-helper: %w: bad data frame: %v", protocol.ErrProtocol, err)
			}
			if err := ui.Data(d); err != nil {
				return "", err
			}
		case protocol.TypeSetAuthtok:
			a, ok := ui.(interface{ SetAuthtok(string) error })
			if !ok {
				return "", fmt.Errorf("otpgate-helper: %w: unexpected %s frame", protocol.ErrProtocol, f.Type)
			}
			err := a.SetAuthtok(string(f.Payload))
			clear(f.Payload)
			if err != nil {
				return "", err
			}
		case protocol.TypeResult:
			return verdictOf(f)
		default:
			return "", fmt.Errorf("otpgate-helper: %w: unexpected %s frame", protocol.ErrProtocol, f.Type)
		}
	}
}

// verdictOf returns the verdict of a result frame, if it is one.
func verdictOf(f protocol.Frame) (string, error) {
	switch v := string(f.Payload); v {
	case protocol.ResultSuccess, protocol.ResultAuthErr, protocol.ResultIgnore, protocol.ResultMaxTries, protocol.ResultServiceErr:
		return v, nil
	}
	return "", fmt.Errorf("otpgate-helper: %w: unknown verdict %q", protocol.ErrProtocol, f.Payload)
}

func write(c Conn, t protocol.Type, p []byte, timeout time.Duration) error {
	if err := c.SetWriteDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	return protocol.WriteFrame(c, protocol.Frame{Type: t, Payload: p})
}

// Exec runs path (the launcher, which execs the helper; or the helper
// itself, when root runs it) as the PAM module does (a socketpair on its
// standard input and output, standard error to /dev/null, an empty
// environment), and converses with the helper. The verdict counts only
// when the helper also exits 0.
func Exec(path string, req protocol.Request, ui UI) (string, error) {
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("otpgate-helper: socketpair: %w", err)
	}
	theirs := os.NewFile(uintptr(fds[1]), "helper")
	c, err := SocketFile(fds[0], "helper socket")
	if err != nil {
		syscall.Close(fds[0])
		theirs.Close()
		return "", fmt.Errorf("otpgate-helper: %w", err)
	}
	defer c.Close()
	cmd := &exec.Cmd{Path: path, Args: []string{path}, Env: []string{}, Stdin: theirs, Stdout: theirs}
	err = cmd.Start()
	theirs.Close()
	if err != nil {
		return "", fmt.Errorf("otpgate-helper: %w", err)
	}
	verdict, err := Converse(c, req, ui, ClientTimeout)
	c.Close()
	if err != nil {
		cmd.Process.Kill()
	}
	if werr := cmd.Wait(); err == nil && werr != nil {
		err = fmt.Errorf("otpgate-helper %s: %w", path, werr)
	}
	if err != nil {
		return "", err
	}
	return verdict, nil
}

// ErrNotSetuid is returned by CheckInstalled for a launcher that cannot
// serve normal users.
var ErrNotSetuid = errors.New("not installed setuid root")

// CheckInstalled reports whether path (the launcher) is a root-owned
// regular file with the setuid bit, as make install leaves it.
func CheckInstalled(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !fi.Mode().IsRegular() || !ok || st.Uid != 0 || fi.Mode()&os.ModeSetuid == 0 {
		return fmt.Errorf("%s is %w", path, ErrNotSetuid)
	}
	return nil
}

// SocketPath is the daemon's socket that otpgate and sshcheck try before
// they exec the launcher. Like InstalledPath, only the build changes it.
var SocketPath = DefaultSocket

// ErrNoDaemon is returned by Dial when no daemon listens at the socket:
// it does not exist, or nothing accepts on it. Only then may a client
// fall back to exec; any other failure is a denial.
var ErrNoDaemon = errors.New("no otpgate-helper daemon listens there")

// Dial connects to the daemon at socket. The socket must be root-owned in
// a root-owned directory that nobody else can write: anything else could
// be a fake daemon collecting codes.
func Dial(socket string) (Conn, error) {
	var st syscall.Stat_t
	dir := filepath.Dir(socket)
	if err := syscall.Lstat(dir, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%s: %w", socket, ErrNoDaemon)
		}
		return nil, fmt.Errorf("otpgate-helper socket %s: %w", socket, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFDIR || st.Uid != 0 || st.Mode&0o022 != 0 {
		return nil, fmt.Errorf("otpgate-helper socket %s: %s must be a directory owned by root and not group- or world-writable", socket, dir)
	}
	if err := syscall.Lstat(socket, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%s: %w", socket, ErrNoDaemon)
		}
		return nil, fmt.Errorf("otpgate-helper socket %s: %w", socket, err)
	}
	if st.Mode&syscall.S_IFMT != syscall.S_IFSOCK || st.Uid != 0 {
		return nil, fmt.Errorf("otpgate-helper socket %s is not a socket owned by root", socket)
	}
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("otpgate-helper socket: %w", err)
	}
	// A local stream connect does not block for long: the backlog is full
	// (EAGAIN) or it connects.
	if err := syscall.Connect(fd, &syscall.SockaddrUnix{Name: socket}); err != nil {
		syscall.Close(fd)
		if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ENOENT) {
			return nil, fmt.Errorf("%s: %w", socket, ErrNoDaemon)
		}
		return nil, fmt.Errorf("otpgate-helper socket %s: %w", socket, err)
	}
	f, err := SocketFile(fd, "otpgate-helper socket")
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	return f, nil
}

// Reach converses with the helper: through the daemon at socket when one
// listens there, else through the launcher at launcher (exec). Once the
// request went to the daemon, a failure is the answer: there is never a
// second attempt through the other way.
func Reach(socket, launcher string, req protocol.Request, ui UI) (string, error) {
	c, err := Dial(socket)
	if err == nil {
		defer c.(io.Closer).Close()
		return Converse(c, req, ui, ClientTimeout)
	}
	if !errors.Is(err, ErrNoDaemon) {
		return "", err
	}
	if err := CheckInstalled(launcher); err != nil {
		return "", fmt.Errorf("no otpgate-helper daemon at %s (%w), and the launcher %w", socket, ErrNoDaemon, err)
	}
	return Exec(launcher, req, ui)
}

// DaemonSocket reports whether a socket file is at socket, so that a
// client can tell, before it asks anything, which way it will go.
func DaemonSocket(socket string) bool {
	var st syscall.Stat_t
	return syscall.Lstat(socket, &st) == nil && st.Mode&syscall.S_IFMT == syscall.S_IFSOCK
}
