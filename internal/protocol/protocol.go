// Package protocol is the codec between pam_otpgate.so (or the otpgate
// command, when it is not root) and otpgate-helper.
//
// The two ends talk over a socketpair in frames: 1 byte of type, 4 bytes
// of big-endian payload length, then the payload, at most MaxPayload
// bytes. The client (the PAM module) sends a Request frame first; the
// helper then sends prompts and messages, the client answers each prompt
// with an Answer or ConvFailed frame, and the helper ends with one Result
// frame and exits. A frame of an unknown type or an oversize length is a
// protocol error, and the peer that sees it gives up: the PAM module kills
// the helper and denies.
//
// pam/pam_otpgate.c is the other implementation of this codec; the two
// must agree on every constant here.
package protocol

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// MaxPayload is the largest payload of a frame, in bytes.
const MaxPayload = 64 << 10

// Type is the first byte of a frame.
type Type byte

// Frame types sent by the client (the PAM module or otpgate) to the helper.
const (
	TypeRequest    Type = 0x01 // first frame: the encoded Request
	TypeAnswer     Type = 0x02 // the answer to the last prompt
	TypeConvFailed Type = 0x03 // the conversation failed; no answer
)

// Frame types sent by the helper to the client.
const (
	TypePromptEchoOff Type = 0x10 // ask, without echo (a code); expects Answer or ConvFailed
	TypePromptEchoOn  Type = 0x11 // ask, with echo; expects Answer or ConvFailed
	TypeInfo          Type = 0x12 // a line to show
	TypeError         Type = 0x13 // an error line to show
	TypeSetAuthtok    Type = 0x14 // forward_pass: the password part, for PAM_AUTHTOK
	TypeResult        Type = 0x15 // the verdict, one of the Result* names; the last frame
	TypeData          Type = 0x16 // self mode only: a JSON object for otpgate (never sent to the PAM module)
)

// Verdicts, the payload of a Result frame. The PAM module maps them to
// PAM_SUCCESS, PAM_AUTH_ERR, PAM_IGNORE, PAM_MAXTRIES and PAM_SERVICE_ERR,
// and treats anything else as PAM_AUTH_ERR.
const (
	ResultSuccess    = "success"
	ResultAuthErr    = "auth_err"
	ResultIgnore     = "ignore"      // not enrolled, and nullok was given
	ResultMaxTries   = "maxtries"    // the account is locked
	ResultServiceErr = "service_err" // a bad request or argument
)

// ErrProtocol is wrapped by every error about a malformed frame or
// request.
var ErrProtocol = errors.New("protocol error")

func (t Type) valid() bool {
	return (t >= TypeRequest && t <= TypeConvFailed) || (t >= TypePromptEchoOff && t <= TypeData)
}

func (t Type) String() string {
	names := map[Type]string{
		TypeRequest: "request", TypeAnswer: "answer", TypeConvFailed: "conv-failed",
		TypePromptEchoOff: "prompt-echo-off", TypePromptEchoOn: "prompt-echo-on", TypeInfo: "info",
		TypeError: "error", TypeSetAuthtok: "set-authtok", TypeResult: "result", TypeData: "data",
	}
	if n, ok := names[t]; ok {
		return n
	}
	return fmt.Sprintf("type 0x%02x", byte(t))
}

// Frame is one message.
type Frame struct {
	Type    Type
	Payload []byte
}

// ReadFrame reads one frame. A clean end of input before the first byte
// is io.EOF; a frame cut short is io.ErrUnexpectedEOF; an unknown type or
// an oversize length wraps ErrProtocol, and nothing more is read.
func ReadFrame(r io.Reader) (Frame, error) {
	var h [5]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return Frame{}, err
	}
	t, n := Type(h[0]), binary.BigEndian.Uint32(h[1:])
	if !t.valid() {
		return Frame{}, fmt.Errorf("%w: unknown frame %s", ErrProtocol, t)
	}
	if n > MaxPayload {
		return Frame{}, fmt.Errorf("%w: %s frame of %d bytes, over %d", ErrProtocol, t, n, MaxPayload)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return Frame{}, err
	}
	return Frame{Type: t, Payload: p}, nil
}

// WriteFrame writes one frame in a single Write.
func WriteFrame(w io.Writer, f Frame) error {
	if !f.Type.valid() {
		return fmt.Errorf("%w: unknown frame %s", ErrProtocol, f.Type)
	}
	if len(f.Payload) > MaxPayload {
		return fmt.Errorf("%w: %s frame of %d bytes, over %d", ErrProtocol, f.Type, len(f.Payload), MaxPayload)
	}
	b := make([]byte, 5+len(f.Payload))
	b[0] = byte(f.Type)
	binary.BigEndian.PutUint32(b[1:], uint32(len(f.Payload)))
	copy(b[5:], f.Payload)
	_, err := w.Write(b)
	clear(b) // it may hold a code or a password
	return err
}
