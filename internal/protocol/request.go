package protocol

import (
	"bytes"
	"fmt"
	"strings"
)

// Operations a Request may ask for.
const (
	OpAuthenticate = "authenticate" // the PAM module (trusted mode only)
	OpVerify       = "verify"       // self mode: check a code for one's own account
	OpStatus       = "status"       // self mode
	OpEnroll       = "enroll"       // self mode
	OpBackupCodes  = "backup-codes" // self mode
)

// MaxArgs bounds the arguments in a request.
const MaxArgs = 64

// Request is the first frame. On the wire it is a sequence of
// "key=value" fields, each ended by a NUL byte: op, user, flags, service,
// rhost, ruser and tty at most once each, and arg once per argument (the
// pam.d arguments, in order). A value cannot hold a NUL, so a hostile user
// or host name cannot add a field. Unknown or repeated keys are errors.
type Request struct {
	Op      string
	User    string
	Silent  bool // PAM_SILENT: the client shows no info or error messages
	Service string
	RHost   string
	RUser   string
	TTY     string
	Args    []string
}

// Encode returns the wire form of r.
func (r Request) Encode() ([]byte, error) {
	var b bytes.Buffer
	flags := ""
	if r.Silent {
		flags = "silent"
	}
	fields := [][2]string{{"op", r.Op}, {"user", r.User}, {"flags", flags}, {"service", r.Service},
		{"rhost", r.RHost}, {"ruser", r.RUser}, {"tty", r.TTY}}
	for _, a := range r.Args {
		fields = append(fields, [2]string{"arg", a})
	}
	if len(r.Args) > MaxArgs {
		return nil, fmt.Errorf("%w: %d arguments, over %d", ErrProtocol, len(r.Args), MaxArgs)
	}
	for _, f := range fields {
		if strings.IndexByte(f[1], 0) >= 0 {
			return nil, fmt.Errorf("%w: %s holds a NUL byte", ErrProtocol, f[0])
		}
		b.WriteString(f[0])
		b.WriteByte('=')
		b.WriteString(f[1])
		b.WriteByte(0)
	}
	if b.Len() > MaxPayload {
		return nil, fmt.Errorf("%w: request of %d bytes, over %d", ErrProtocol, b.Len(), MaxPayload)
	}
	return b.Bytes(), nil
}

// DecodeRequest parses the payload of a Request frame. op is required;
// every other field may be missing (empty).
func DecodeRequest(p []byte) (Request, error) {
	var r Request
	if len(p) > MaxPayload {
		return r, fmt.Errorf("%w: request of %d bytes, over %d", ErrProtocol, len(p), MaxPayload)
	}
	if len(p) == 0 || p[len(p)-1] != 0 {
		return r, fmt.Errorf("%w: request does not end with a NUL byte", ErrProtocol)
	}
	seen := map[string]bool{}
	for _, field := range bytes.Split(p[:len(p)-1], []byte{0}) {
		k, v, ok := strings.Cut(string(field), "=")
		if !ok {
			return Request{}, fmt.Errorf("%w: request field without '='", ErrProtocol)
		}
		if k != "arg" && seen[k] {
			return Request{}, fmt.Errorf("%w: request field %q repeated", ErrProtocol, k)
		}
		seen[k] = true
		switch k {
		case "op":
			r.Op = v
		case "user":
			r.User = v
		case "service":
			r.Service = v
		case "rhost":
			r.RHost = v
		case "ruser":
			r.RUser = v
		case "tty":
			r.TTY = v
		case "flags":
			for _, f := range strings.Split(v, ",") {
				switch f {
				case "":
				case "silent":
					r.Silent = true
				default:
					return Request{}, fmt.Errorf("%w: unknown request flag %q", ErrProtocol, f)
				}
			}
		case "arg":
			if len(r.Args) >= MaxArgs {
				return Request{}, fmt.Errorf("%w: over %d arguments", ErrProtocol, MaxArgs)
			}
			r.Args = append(r.Args, v)
		default:
			return Request{}, fmt.Errorf("%w: unknown request field %q", ErrProtocol, k)
		}
	}
	switch r.Op {
	case OpAuthenticate, OpVerify, OpStatus, OpEnroll, OpBackupCodes:
	default:
		return Request{}, fmt.Errorf("%w: unknown operation %q", ErrProtocol, r.Op)
	}
	return r, nil
}
