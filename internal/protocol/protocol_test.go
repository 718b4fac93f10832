package protocol

import (
	"bytes"
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
)

func TestFrameRoundTrip(t *testing.T) {
	for _, f := range []Frame{
		{TypeRequest, []byte("op=authenticate\x00")},
		{TypeAnswer, []byte("123456")},
		{TypeConvFailed, nil},
		{TypeResult, []byte(ResultSuccess)},
		{TypeData, bytes.Repeat([]byte{'x'}, MaxPayload)},
	} {
		var b bytes.Buffer
		if err := WriteFrame(&b, f); err != nil {
			t.Fatalf("WriteFrame(%s): %v", f.Type, err)
		}
		if b.Len() != 5+len(f.Payload) {
			t.Fatalf("%s: wrote %d bytes", f.Type, b.Len())
		}
		g, err := ReadFrame(&b)
		if err != nil {
			t.Fatalf("ReadFrame(%s): %v", f.Type, err)
		}
		if g.Type != f.Type || !bytes.Equal(g.Payload, f.Payload) {
			t.Fatalf("round trip of %s changed it", f.Type)
		}
		if _, err := ReadFrame(&b); err != io.EOF {
			t.Fatalf("after the frame: %v, want io.EOF", err)
		}
	}
}

func TestReadFrameRejects(t *testing.T) {
	for name, in := range map[string]string{
		"unknown type": "\x00\x00\x00\x00\x00",
		"type 0x04":    "\x04\x00\x00\x00\x00",
		"type 0x17":    "\x17\x00\x00\x00\x00",
		"oversize":     "\x15\x00\x01\x00\x01",
		"huge":         "\x15\xff\xff\xff\xff",
	} {
		_, err := ReadFrame(strings.NewReader(in))
		if !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
	for name, in := range map[string]string{
		"short header":  "\x15\x00\x00",
		"short payload": "\x15\x00\x00\x00\x05abc",
		"no payload":    "\x15\x00\x00\x00\x05",
	} {
		_, err := ReadFrame(strings.NewReader(in))
		if err != io.ErrUnexpectedEOF {
			t.Errorf("%s: %v, want io.ErrUnexpectedEOF", name, err)
		}
	}
}

func TestWriteFrameRejects(t *testing.T) {
	var b bytes.Buffer
	if err := WriteFrame(&b, Frame{Type: 0x42}); !errors.Is(err, ErrProtocol) {
		t.Errorf("unknown type: %v", err)
	}
	if err := WriteFrame(&b, Frame{Type: TypeInfo, Payload: make([]byte, MaxPayload+1)}); !errors.Is(err, ErrProtocol) {
		t.Errorf("oversize: %v", err)
	}
	if b.Len() != 0 {
		t.Errorf("wrote %d bytes for refused frames", b.Len())
	}
}

func TestRequestRoundTrip(t *testing.T) {
	r := Request{Op: OpAuthenticate, User: "alice", Silent: true, Service: "sshd", RHost: "192.0.2.1",
		RUser: "bob", TTY: "ssh", Args: []string{"nullok", "prompt=Code: ", "config=/etc/x.toml"}}
	p, err := r.Encode()
	if err != nil {
		t.Fatal(err)
	}
	g, err := DecodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, r) {
		t.Fatalf("round trip: got %+v, want %+v", g, r)
	}
}

// TestRequestFromC decodes a request exactly as pam_otpgate.c builds it.
func TestRequestFromC(t *testing.T) {
	p := []byte("op=authenticate\x00user=alice\x00flags=\x00service=sudo\x00rhost=\x00ruser=alice\x00tty=/dev/pts/0\x00arg=nullok\x00arg=debug\x00")
	r, err := DecodeRequest(p)
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Op: OpAuthenticate, User: "alice", Service: "sudo", RUser: "alice", TTY: "/dev/pts/0", Args: []string{"nullok", "debug"}}
	if !reflect.DeepEqual(r, want) {
		t.Fatalf("got %+v, want %+v", r, want)
	}
}

func TestDecodeRequestRejects(t *testing.T) {
	for name, in := range map[string]string{
		"empty":          "",
		"no final NUL":   "op=status",
		"no op":          "user=alice\x00",
		"unknown op":     "op=shell\x00",
		"no equals":      "op=status\x00user\x00",
		"repeated user":  "op=status\x00user=a\x00user=b\x00",
		"repeated op":    "op=status\x00op=enroll\x00",
		"unknown field":  "op=status\x00config=/tmp/x\x00",
		"unknown flag":   "op=status\x00flags=loud\x00",
		"empty field":    "op=status\x00\x00",
		"too many args":  "op=status\x00" + strings.Repeat("arg=x\x00", MaxArgs+1),
		"NUL in a value": "op=status\x00user=a\x00b\x00",
	} {
		if _, err := DecodeRequest([]byte(in)); !errors.Is(err, ErrProtocol) {
			t.Errorf("%s: %v, want ErrProtocol", name, err)
		}
	}
}

func TestEncodeRejectsNUL(t *testing.T) {
	if _, err := (Request{Op: OpStatus, User: "a\x00user=root"}).Encode(); !errors.Is(err, ErrProtocol) {
		t.Fatalf("NUL in user: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte("\x15\x00\x00\x00\x07success"))
	f.Add([]byte("\x01\x00\x00\x00\x10op=authenticate\x00"))
	f.Add([]byte("\x10\x00\x00\x00\x13Verification code: "))
	f.Add([]byte("\x15\xff\xff\xff\xff"))
	f.Add([]byte("\x99\x00\x00\x00\x00"))
	f.Add([]byte("\x02\x00\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		fr, err := ReadFrame(bytes.NewReader(in))
		if err != nil {
			return
		}
		if len(fr.Payload) > MaxPayload || !fr.Type.valid() {
			t.Fatalf("accepted %s frame of %d bytes", fr.Type, len(fr.Payload))
		}
		var b bytes.Buffer
		if err := WriteFrame(&b, fr); err != nil {
			t.Fatalf("cannot write back an accepted frame: %v", err)
		}
		if !bytes.Equal(b.Bytes(), in[:b.Len()]) {
			t.Fatalf("re-encoding differs from the input")
		}
	})
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte("op=authenticate\x00user=alice\x00flags=\x00service=sudo\x00rhost=\x00ruser=alice\x00tty=/dev/pts/0\x00arg=nullok\x00"))
	f.Add([]byte("op=status\x00"))
	f.Add([]byte("op=enroll\x00flags=silent\x00arg=no-confirm\x00"))
	f.Add([]byte("op=verify\x00user=a\x00user=b\x00"))
	f.Add([]byte("user=x\x00"))
	f.Fuzz(func(t *testing.T, in []byte) {
		r, err := DecodeRequest(in)
		if err != nil {
			return
		}
		p, err := r.Encode()
		if err != nil {
			t.Fatalf("cannot encode a decoded request: %v", err)
		}
		r2, err := DecodeRequest(p)
		if err != nil {
			t.Fatalf("cannot decode a re-encoded request: %v", err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip changed %+v to %+v", r, r2)
		}
	})
}
