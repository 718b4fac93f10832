// Package helper is otpgate-helper, the one privileged code path of
// otpgate: pam_otpgate.so and (when it is not root) the otpgate command
// exec it with a socketpair on its standard input and output, send it one
// request frame (see internal/protocol), and it answers with prompts,
// messages and a verdict.
//
// The helper decides whom it serves by the caller's uid alone, which
// cmd/otpgate-helper takes from the kernel and the launcher, never from
// the request:
//
//   - caller 0, trusted mode: exec'd as root by the PAM module in a root
//     host (which makes a setuid-root host such as sudo wholly root
//     first). The request's user and pam.d arguments, config= among them,
//     count.
//   - any other caller, self mode: a normal user reached the helper
//     through otpgate-launch-helper, the setuid launcher (the otpgate
//     command, sshcheck, or the PAM module in a host that runs as the
//     user, such as a screen locker). It acts only for the account of that
//     uid (looked up in /etc/passwd, then through NSS with getent),
//     always reads the default config,
//     takes no path from the request, and offers status, verify,
//     authenticate, enroll and backup-codes. It never reveals a stored
//     secret, never resets the failure count, and every code it checks
//     counts against the lockout.
//
// Every wait is bounded: the helper gives up on an answer after its
// timeout and denies. The process exits 0 only after it sent a verdict.
package helper

import (
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/otpgate/otpgate/internal/authlog"
	"github.com/otpgate/otpgate/internal/nss"
	"github.com/otpgate/otpgate/internal/protocol"
)

// Timeouts.
const (
	// DefaultTimeout is how long the helper waits for the request and for
	// the answer to a prompt in trusted mode; the pam.d argument
	// timeout=SECONDS changes it.
	DefaultTimeout = 60 * time.Second
	// SelfTimeout is that wait in self mode, where a person at a terminal
	// may be scanning a QR code.
	SelfTimeout = 5 * time.Minute
	// MaxTimeout bounds timeout=SECONDS.
	MaxTimeout = 600 * time.Second
)

// Options are the helper's fixed inputs, set by cmd/otpgate-helper; none
// of them comes from the request.
type Options struct {
	Caller     int              // the uid served: 0 is trusted mode, anything else self mode for that uid
	SelfConfig string           // the config read in self mode (config.DefaultPath)
	Passwd     string           // the passwd file self mode looks the uid up in first ("/etc/passwd"); then NSS
	NSS        *nss.Resolver    // users and groups through getent; nil means nss.Default
	Localtime  string           // the host's zone for [enroll] deadline; "" means /etc/localtime
	Log        *authlog.Logger  // nil drops the log lines
	Now        func() time.Time // nil means time.Now
	// Postgres is the PostgreSQL backend, for a config with backend =
	// "postgres"; nil in the files-only otpgate-helper, which then hands
	// such a login over with Handoff.
	Postgres Postgres
	// DBReason classifies an error of Postgres for the log.
	DBReason DBReason
	// Handoff execs otpgate-helper-pg with this request and the same
	// connection; it returns only when it could not.
	Handoff func(protocol.Request) error
	// Request is the request already read by the otpgate-helper that
	// handed this one the connection; nil means read it from the
	// connection.
	Request *protocol.Request
}

// Run serves one request on c and returns the process exit status: 0
// when a verdict was sent, 1 otherwise.
func Run(c Conn, o Options) int {
	s := &session{c: c, timeout: DefaultTimeout, log: o.Log}
	if o.Request != nil {
		return answer(s, *o.Request, o)
	}
	f, err := s.read()
	if err == nil && f.Type != protocol.TypeRequest {
		err = fmt.Errorf("%w: %s frame before the request", protocol.ErrProtocol, f.Type)
	}
	var req protocol.Request
	if err == nil {
		req, err = protocol.DecodeRequest(f.Payload)
	}
	if errors.Is(err, io.EOF) {
		// Connected and went away without a byte (otpgate doctor
		// checking that the daemon answers): nothing was asked.
		return 1
	}
	if err != nil {
		o.Log.Notice("helper: reading the request: " + err.Error())
		s.send(protocol.TypeResult, protocol.ResultAuthErr)
		return 1
	}
	return answer(s, req, o)
}

// answer serves req and sends the verdict.
func answer(s *session, req protocol.Request, o Options) int {
	var verdict string
	if o.Caller == 0 {
		verdict = trusted(s, req, o)
	} else {
		verdict = self(s, req, o)
	}
	if err := s.send(protocol.TypeResult, verdict); err != nil {
		return 1
	}
	return 0
}

// ErrConvFailed is returned by ask when the client's conversation failed.
var ErrConvFailed = errors.New("the conversation failed")

// session is one connection with the client.
type session struct {
	c       Conn
	timeout time.Duration
	silent  bool
	log     *authlog.Logger
}

func (s *session) read() (protocol.Frame, error) {
	if err := s.c.SetReadDeadline(time.Now().Add(s.timeout)); err != nil {
		return protocol.Frame{}, err
	}
	return protocol.ReadFrame(s.c)
}

func (s *session) send(t protocol.Type, payload string) error {
	if err := s.c.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	return protocol.WriteFrame(s.c, protocol.Frame{Type: t, Payload: []byte(payload)})
}

// info and fail show a line to the person; a lost line is not an error.
func (s *session) info(format string, args ...any) {
	s.send(protocol.TypeInfo, fmt.Sprintf(format, args...))
}

func (s *session) fail(format string, args ...any) {
	s.send(protocol.TypeError, fmt.Sprintf(format, args...))
}

// ask sends a prompt and returns the answer. The caller clears it after
// use.
func (s *session) ask(prompt string, echo bool) ([]byte, error) {
	t := protocol.TypePromptEchoOff
	if echo {
		t = protocol.TypePromptEchoOn
	}
	if err := s.send(t, prompt); err != nil {
		return nil, err
	}
	f, err := s.read()
	if err != nil {
		return nil, err
	}
	switch f.Type {
	case protocol.TypeAnswer:
		return f.Payload, nil
	case protocol.TypeConvFailed:
		return nil, ErrConvFailed
	}
	clear(f.Payload)
	return nil, fmt.Errorf("%w: %s frame instead of an answer", protocol.ErrProtocol, f.Type)
}

// logLine writes one attempt line for outcomes verify.Verify does not log;
// kv are more key, value pairs (see authlog.Fields).
func logLine(log *authlog.Logger, user, service, rhost, outcome string, kv ...string) {
	log.Notice(authlog.Fields(append([]string{"user", user, "service", dash(service), "rhost", dash(rhost), "outcome", outcome}, kv...)...))
}

// dash stands for a value the client did not give.
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}
