package authlog

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSyslogAuthpriv(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	l := Dial(sock, "otpgate", nil)
	defer l.Close()
	l.Info("user=alice outcome=accepted")
	l.Notice("user=alice outcome=denied rhost=evil\nuser=root outcome=accepted")
	buf := make([]byte, 4096)
	for _, want := range []string{
		"<86>", // authpriv (10) * 8 + info (6)
		"<85>", // authpriv * 8 + notice (5)
	} {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatal(err)
		}
		msg := string(buf[:n])
		if !strings.HasPrefix(msg, want) || !strings.Contains(msg, " otpgate[") {
			t.Errorf("message %q, want priority %s and tag otpgate", msg, want)
		}
		if strings.Count(strings.TrimRight(msg, "\n"), "\n") != 0 || !strings.Contains(msg, "user=alice") {
			t.Errorf("message %q spans lines: a hostile field forged a second line", msg)
		}
	}
}

func TestNoSyslogFallsBack(t *testing.T) {
	var b bytes.Buffer
	l := Dial(filepath.Join(t.TempDir(), "missing"), "otpgate", &b)
	l.Notice("user=alice outcome=denied")
	if b.String() != "otpgate: log: user=alice outcome=denied\n" {
		t.Errorf("fallback got %q", b.String())
	}
	// No syslog and no fallback: the line is dropped, nothing breaks.
	Dial(filepath.Join(t.TempDir(), "missing"), "otpgate", nil).Info("x")
	var nilLogger *Logger
	nilLogger.Info("x")
}

// TestFullSocketDoesNotHang: a syslog that stopped reading costs a login
// at most sendWait per line, never a hang; the line goes to the fallback.
func TestFullSocketDoesNotHang(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close() // never read
	var b bytes.Buffer
	l := Dial(sock, "otpgate", &b)
	defer l.Close()
	line := "user=alice outcome=denied " + strings.Repeat("x", 1000)
	for i := 0; i < 10000 && b.Len() == 0; i++ {
		start := time.Now()
		l.Notice(line)
		if d := time.Since(start); d > sendWait+2*time.Second {
			t.Fatalf("line %d took %v", i, d)
		}
	}
	if !strings.Contains(b.String(), "otpgate: log: user=alice") {
		t.Error("the socket never filled up, or the dropped line did not reach the fallback")
	}
}
