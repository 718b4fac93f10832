package helper

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
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
