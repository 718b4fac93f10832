package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/totp"
)

// writeConfig writes content to a fresh config.toml with mode 0644 (set
// with chmod, so the umask does not matter).
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// loadWithin runs Load under a deadline: a FIFO must not make it hang.
func loadWithin(t *testing.T, path string) (Config, error) {
	t.Helper()
	type result struct {
		c   Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Load(path)
		done <- result{c, err}
	}()
	select {
	case r := <-done:
		return r.c, r.err
	case <-time.After(5 * time.Second):
		t.Fatalf("Load(%s) did not return within 5s", path)
		return Config{}, nil
	}
}

// TestLoadMissing: only the default path may be absent (then the
// defaults apply); a missing file named explicitly is an error that names
// it.
func TestLoadMissing(t *testing.T) {
	dir := t.TempDir()
	for _, path := range []string{
		filepath.Join(dir, "config.toml"),
		filepath.Join(dir, "no", "such", "dir", "config.toml"),
	} {
		_, err := Load(path)
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("Load(%s): %v, want an error naming the missing file", path, err)
		}
	}
	if _, err := os.Stat(DefaultPath); errors.Is(err, os.ErrNotExist) {
		c, err := Load(DefaultPath)
		if err != nil || !reflect.DeepEqual(c, Default()) {
			t.Errorf("Load(%s) with no file: %+v, %v; want the defaults", DefaultPath, c, err)
		}
	}
}

func TestDefault(t *testing.T) {
	c := Default()
	host, _ := os.Hostname()
	want := Config{
		Issuer:       host,
		Params:       totp.Params{Algorithm: "SHA1", Digits: 6, Period: 30},
		Window:       1,
		Store:        "/var/lib/otpgate",
		MaxFailures:  5,
		LockDuration: 15 * time.Minute,
		BackupCodes:  10,
		FirstLogin:   false,
		Backend:      "files",
		Postgres:     Postgres{OnUnavailable: "deny", ConnectTimeout: 5 * time.Second, QueryTimeout: 5 * time.Second},
	}
	if host == "" {
		want.Issuer = "otpgate"
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() = %+v\nwant %+v", c, want)
	}
	if DefaultPath != "/etc/otpgate/config.toml" || DefaultStore != "/var/lib/otpgate" {
		t.Errorf("DefaultPath %s, DefaultStore %s", DefaultPath, DefaultStore)
	}
}

func TestLoadEveryKey(t *testing.T) {
	path := writeConfig(t, `# every key, none at its default
issuer = "web-01"
algorithm = "SHA512"
digits = 8
period = 60
window = 3
store = "/srv/otpgate"

[lockout]
max_failures = 7
lock_duration = "1h30m"

[backup_codes]
count = 12

[enroll]
first_login = true

[postgres]
dsn = "host=db1 dbname=otpgate user=web1 passfile=/etc/otpgate/pgpass"
on_unavailable = "local"
connect_timeout = "3s"
query_timeout = "2s"
`)
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		Issuer:       "web-01",
		Params:       totp.Params{Algorithm: "SHA512", Digits: 8, Period: 60},
		Window:       3,
		Store:        "/srv/otpgate",
		MaxFailures:  7,
		LockDuration: 90 * time.Minute,
		BackupCodes:  12,
		FirstLogin:   true,
		Backend:      "files",
		Postgres: Postgres{DSN: "host=db1 dbname=otpgate user=web1 passfile=/etc/otpgate/pgpass",
			OnUnavailable: "local", ConnectTimeout: 3 * time.Second, QueryTimeout: 2 * time.Second},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load = %+v\nwant %+v", c, want)
	}
}

// The example in docs/design.md ("Configuration") is the defaults, with an issuer.
func TestDesignExample(t *testing.T) {
	const example = `issuer = "web-01"          # label in the app; default: the host name
algorithm = "SHA1"         # SHA1 | SHA256 | SHA512
digits = 6                 # 6 | 8
period = 30                # seconds
window = 1                 # steps accepted on either side
store = "/var/lib/otpgate"

[lockout]
max_failures = 5
lock_duration = "15m"

[backup_codes]
count = 10

[enroll]
first_login = false        # offer enrollment inside the login of a user with no secret
`
	c, err := Parse("example.toml", []byte(example))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := Default()
	want.Issuer = "web-01"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Parse = %+v\nwant %+v", c, want)
	}
}

// Keys left out keep their defaults.
func TestPartial(t *testing.T) {
	for content, change := range map[string]func(*Config){
		"":                                    func(*Config) {},
		"# nothing but a comment\n":           func(*Config) {},
		"digits = 8\n":                        func(c *Config) { c.Params.Digits = 8 },
		"algorithm = \"SHA256\"\n":            func(c *Config) { c.Params.Algorithm = "SHA256" },
		"window = 0\n":                        func(c *Config) { c.Window = 0 },
		"[lockout]\nmax_failures = 100\n":     func(c *Config) { c.MaxFailures = 100 },
		"[lockout]\nlock_duration = \"1s\"\n": func(c *Config) { c.LockDuration = time.Second },
		"[lockout]\nlock_duration = \"168h\"\n": func(c *Config) {
			c.LockDuration = 168 * time.Hour
		},
		"[backup_codes]\ncount = 0\n": func(c *Config) { c.BackupCodes = 0 },
		"[enroll]\n":                  func(*Config) {},
		"lockout.max_failures = 9\n":  func(c *Config) { c.MaxFailures = 9 },
		"lockout = { max_failures = 9, lock_duration = \"2m\" }\n": func(c *Config) {
			c.MaxFailures, c.LockDuration = 9, 2*time.Minute
		},
	} {
		want := Default()
		change(&want)
		c, err := Parse("partial.toml", []byte(content))
		if err != nil || !reflect.DeepEqual(c, want) {
			t.Errorf("Parse(%q) = %+v, %v\nwant %+v", content, c, err, want)
		}
	}
}

// head puts a few lines before the line under test, so line numbers are
// not trivially 1.
const head = "# otpgate policy\nissuer = \"host\"\n\n"

func TestBadValues(t *testing.T) {
	for _, c := range []struct {
		name    string
		content string
		key     string // must appear in the error
		line    int    // must appear in the error
	}{
		{"algorithm MD5", head + "algorithm = \"MD5\"\n", "algorithm", 4},
		{"algorithm lower case", head + "algorithm = \"sha1\"\n", "algorithm", 4},
		{"digits 7", head + "digits = 7\n", "digits", 4},
		{"digits 0", head + "digits = 0\n", "digits", 4},
		{"period 5", head + "period = 5\n", "period", 4},
		{"period 301", head + "period = 301\n", "period", 4},
		{"window 11", head + "window = 11\n", "window", 4},
		{"window -1", head + "window = -1\n", "window", 4},
		{"store relative", head + "store = \"relative/path\"\n", "store", 4},
		{"store not clean", head + "store = \"/var/lib/../otpgate\"\n", "store", 4},
		{"store trailing slash", head + "store = \"/var/lib/otpgate/\"\n", "store", 4},
		{"store empty", head + "store = \"\"\n", "store", 4},
		{"issuer empty", "\nissuer = \"\"\n", "issuer", 2},
		{"issuer with colon", "\nissuer = \"a:b\"\n", "issuer", 2},
		{"issuer with newline", "\nissuer = \"a\\nb\"\n", "issuer", 2},
		{"issuer too long", "\nissuer = \"" + strings.Repeat("x", 65) + "\"\n", "issuer", 2},
		{"max_failures 0", head + "[lockout]\nlock_duration = \"5m\"\nmax_failures = 0\n", "max_failures", 6},
		{"max_failures 101", head + "[lockout]\nmax_failures = 101\n", "max_failures", 5},
		{"lock_duration soon", head + "[lockout]\nlock_duration = \"soon\"\n", "lock_duration", 5},
		{"lock_duration 0s", head + "[lockout]\nlock_duration = \"0s\"\n", "lock_duration", 5},
		{"lock_duration 999ms", head + "[lockout]\nlock_duration = \"999ms\"\n", "lock_duration", 5},
		{"lock_duration negative", head + "[lockout]\nlock_duration = \"-15m\"\n", "lock_duration", 5},
		{"lock_duration over a week", head + "[lockout]\nlock_duration = \"169h\"\n", "lock_duration", 5},
		{"backup count -1", head + "[backup_codes]\ncount = -1\n", "count", 5},
		{"backup count 51", head + "[backup_codes]\ncount = 51\n", "count", 5},
		{"unknown top-level key", head + "colour = \"blue\"\n", "colour", 4},
		{"unknown key in lockout", head + "[lockout]\nmax_failures = 3\nmax_failure = 3\n", "max_failure", 6},
		{"unknown key in enroll", head + "[enroll]\nfirstlogin = true\n", "firstlogin", 5},
		{"unknown table", head + "[lockot]\nmax_failures = 3\n", "lockot", 4},
		{"unknown nested table", head + "[lockout.extra]\nx = 1\n", "lockout.extra", 4},
		{"unknown array of tables", head + "[[users]]\nname = \"a\"\n", "users", 4},
		{"key of another table", head + "[enroll]\nmax_failures = 3\n", "max_failures", 5},
		{"digits as string", head + "digits = \"six\"\n", "digits", 4},
		{"digits as float", head + "digits = 6.0\n", "digits", 4},
		{"first_login as string", head + "[enroll]\nfirst_login = \"yes\"\n", "first_login", 5},
		{"lock_duration as number", head + "[lockout]\nlock_duration = 15\n", "lock_duration", 5},
		{"table as value", head + "lockout = 3\n", "lockout", 4},
		{"value out of int64", head + "window = 99999999999999999999\n", "window", 4},
		{"broken TOML: two =", head + "digits = = 6\n", "digits", 4},
		{"broken TOML: unterminated", head + "store = \"/var/lib/otpgate\n", "store", 4},
		{"broken TOML: duplicate key", head + "digits = 6\ndigits = 8\n", "digits", 5},
		{"two bad keys: first in Check's order", head + "algorithm = \"MD5\"\ndigits = 7\n", "algorithm", 4},
		{"bad period, good digits", head + "digits = 8\nperiod = 1\n", "period", 5},
		{"dotted key", head + "lockout.max_failures = 0\n", "max_failures", 4},
		{"inline table", head + "lockout = { max_failures = 0 }\n", "max_failures", 4},
		{"section header with comment", head + "[lockout]   # policy\nmax_failures = 0\n", "max_failures", 5},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.content)
			_, err := Load(path)
			checkError(t, err, path, c.key, c.line)
			_, err = Parse("/etc/otpgate/other.toml", []byte(c.content))
			checkError(t, err, "/etc/otpgate/other.toml", c.key, c.line)
		})
	}
}

// checkError wants err to name the file, the line (as "file:N:" or
// "line N") and the key.
func checkError(t *testing.T, err error, name, key string, line int) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: accepted, want an error", name)
		return
	}
	msg := err.Error()
	if !strings.Contains(msg, name) {
		t.Errorf("error %q does not name the file %s", msg, name)
	}
	if !strings.Contains(msg, key) {
		t.Errorf("error %q does not name the key %s", msg, key)
	}
	lineRE := regexp.MustCompile(fmt.Sprintf(`%s:%d:|\bline %d\b`, regexp.QuoteMeta(name), line, line))
	if !lineRE.MatchString(msg) {
		t.Errorf("error %q does not give line %d", msg, line)
	}
}

func TestLoadFileAttacks(t *testing.T) {
	valid := "issuer = \"attacker\"\n"
	for _, c := range []struct {
		name  string
		root  bool
		setup func(t *testing.T, path string)
		says  string // in the error
	}{
		{"symlink", false, func(t *testing.T, path string) {
			target := writeConfig(t, valid)
			if err := os.Symlink(target, path); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"dangling symlink", false, func(t *testing.T, path string) {
			if err := os.Symlink(filepath.Join(t.TempDir(), "missing.toml"), path); err != nil {
				t.Fatal(err)
			}
		}, "symbolic link"},
		{"group-writable", false, func(t *testing.T, path string) {
			os.WriteFile(path, []byte(valid), 0o600)
			os.Chmod(path, 0o664)
		}, "writable"},
		{"world-writable", false, func(t *testing.T, path string) {
			os.WriteFile(path, []byte(valid), 0o600)
			os.Chmod(path, 0o646)
		}, "writable"},
		{"fifo", false, func(t *testing.T, path string) {
			if err := unix.Mkfifo(path, 0o644); err != nil {
				t.Fatal(err)
			}
		}, "regular file"},
		{"directory", false, func(t *testing.T, path string) {
			if err := os.Mkdir(path, 0o755); err != nil {
				t.Fatal(err)
			}
		}, "regular file"},
		{"over 64 KiB", false, func(t *testing.T, path string) {
			data := valid + strings.Repeat("# padding\n", 7000)
			os.WriteFile(path, []byte(data), 0o600)
			os.Chmod(path, 0o644)
		}, "bytes"},
		{"wrong owner", true, func(t *testing.T, path string) {
			os.WriteFile(path, []byte(valid), 0o600)
			os.Chmod(path, 0o644)
			if err := os.Lchown(path, 12345, 12345); err != nil {
				t.Fatal(err)
			}
		}, "owned by uid 12345"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if c.root && os.Geteuid() != 0 {
				t.Skip("needs root: only root can make a file owned by another uid")
			}
			path := filepath.Join(t.TempDir(), "config.toml")
			c.setup(t, path)
			got, err := loadWithin(t, path)
			if err == nil {
				t.Fatalf("Load accepted it: %+v", got)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error %q does not name %s", err, path)
			}
			if !strings.Contains(err.Error(), c.says) {
				t.Errorf("error %q does not say %q", err, c.says)
			}
			if !reflect.DeepEqual(got, Config{}) {
				t.Errorf("Load returned %+v with its error; want the zero Config", got)
			}
		})
	}
}

// Readable by others is fine (the design's mode is 0644); so is 0600.
func TestLoadModes(t *testing.T) {
	for _, mode := range []os.FileMode{0o644, 0o600, 0o444, 0o400} {
		path := writeConfig(t, "digits = 8\n")
		if err := os.Chmod(path, mode); err != nil {
			t.Fatal(err)
		}
		c, err := Load(path)
		if err != nil || c.Params.Digits != 8 {
			t.Errorf("Load of a %v file = %+v, %v", mode, c, err)
		}
	}
	// Exactly 64 KiB is still read.
	data := "digits = 8\n"
	for len(data) < maxSize { // comment lines, each under tomlshape's line bound
		n := min(maxSize-len(data), 1000)
		data += "#" + strings.Repeat("x", n-2) + "\n"
	}
	path := writeConfig(t, data)
	if c, err := Load(path); err != nil || c.Params.Digits != 8 {
		t.Errorf("Load of a %d-byte file = %+v, %v", len(data), c, err)
	}
}

// A file that cannot be read is an error, never the defaults: the policy
// might have been stricter than them. /proc/self/mem is a regular file
// owned by the effective uid, mode 0600, size 0, and reading its first
// page fails with EIO.
func TestLoadReadError(t *testing.T) {
	path := "/proc/self/mem"
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFREG || int(st.Uid) != os.Geteuid() {
		t.Skipf("%s is not a regular file of ours here", path)
	}
	c, err := Load(path)
	if err == nil {
		t.Fatalf("Load(%s) = %+v, nil; want a read error", path, c)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Errorf("read error reported as a missing file: %v", err)
	}
}
