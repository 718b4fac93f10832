package pgcli

import (
	"bytes"
	"context"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/cli"
	"github.com/otpgate/otpgate/internal/pgstore"
	"github.com/otpgate/otpgate/internal/pgtest"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
	"github.com/otpgate/otpgate/keystore"
)

// typist answers enroll's prompts: it watches the output for the key URI
// and, at each prompt, types the code of that secret window steps from
// now.
type typist struct {
	mu     sync.Mutex
	out    bytes.Buffer
	in     *io.PipeWriter
	code   string
	typed  int // prompts answered
	window int // steps added to now
}

var uriSecret = regexp.MustCompile(`URI: otpauth://\S*[?&]secret=([A-Z2-7]+)`)

func (ty *typist) Write(p []byte) (int, error) {
	ty.mu.Lock()
	defer ty.mu.Unlock()
	ty.out.Write(p)
	if prompts := strings.Count(ty.out.String(), "Enter the 6-digit code"); prompts > ty.typed {
		m := uriSecret.FindStringSubmatch(ty.out.String())
		if m == nil {
			return len(p), nil
		}
		s, _ := url.QueryUnescape(m[1])
		secret, err := keystore.DecodeSecret(s)
		if err != nil {
			return len(p), nil
		}
		ty.code, _ = totp.CodeAt(secret, uint64(totp.Step(time.Now(), 30)+int64(ty.window)), totp.Default)
		ty.typed = prompts
		go ty.in.Write([]byte(ty.code + "\n"))
	}
	return len(p), nil
}

// TestEnrollConfirmedAgainstDB: otpgate enroll --dsn asks for a code of
// the new secret, checks it under the database's window, not
// config.toml's (a code three steps ahead is refused under window 1 and
// accepted once db policy sets window 3), and stores its step: the
// confirmation code is a replay on a host.
func TestEnrollConfirmedAgainstDB(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the command line's admin commands need root")
	}
	c := pgtest.Get(t)
	db, _ := c.NewDatabase(t)
	if err := pgstore.Init(context.Background(), c.DSN("postgres", db)); err != nil {
		t.Fatal(err)
	}
	host := "web_" + db
	c.ExecIn(t, db, "CREATE ROLE "+host+" LOGIN")
	c.ExecIn(t, db, "GRANT "+pgstore.HostRole+" TO "+host)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	// config.toml's window 5 must not count: the database's does.
	if err := os.WriteFile(cfg, []byte("window = 5\nstore = \""+filepath.Join(dir, "store")+"\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dsn := c.DSN("postgres", db)
	enroll := func(window int) (*typist, int, string) {
		r, w := io.Pipe()
		ty := &typist{in: w, window: window}
		var stderr bytes.Buffer
		code := cli.Main([]string{"--config", cfg, "enroll", "--dsn", dsn, "--user", "root", "--qr", "none", "--force"}, r, ty, &stderr)
		w.Close()
		return ty, code, stderr.String()
	}
	// Three steps ahead: refused under window 1 even if the check falls
	// into the next step.
	ty, code, stderr := enroll(3)
	if code == 0 || !strings.Contains(ty.out.String(), "That code does not match") {
		t.Errorf("a code three steps ahead under the database's window 1: exit %d\n%s\n%s", code, ty.out.String(), stderr)
	}
	if out := run(t, cfg, "db", "policy", "--dsn", dsn, "--window", "3"); !strings.Contains(out, "window: 3") {
		t.Fatalf("db policy: %s", out)
	}
	ty, code, stderr = enroll(3)
	if code != 0 || !strings.Contains(ty.out.String(), "Enrolled root.") {
		t.Fatalf("enroll with a code three steps ahead under window 3: exit %d\n%s\n%s", code, ty.out.String(), stderr)
	}
	cl, err := pgstore.Connect(context.Background(), c.DSN(host, db))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close(context.Background())
	if r := cl.Verify(context.Background(), "root", ty.code, "test", ""); r.Outcome != verify.Denied || r.Reason != "replayed" {
		t.Errorf("the confirmation code on a host: %+v", r)
	}
}

// run runs the command line in this process and returns its output; a
// non-zero exit fails the test.
func run(t *testing.T, cfg string, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if code := cli.Main(append([]string{"--config", cfg}, args...), strings.NewReader(""), &out, &out); code != 0 {
		t.Fatalf("otpgate %s: exit %d\n%s", strings.Join(args, " "), code, out.String())
	}
	return out.String()
}
