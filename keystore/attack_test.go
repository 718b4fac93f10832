package keystore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// hangLimit bounds every store call in these tests: a FIFO or a lock that
// makes a call block fails the test instead of hanging it.
const hangLimit = 5 * time.Second

// fileKind is one of the three per-user files.
type fileKind struct {
	name  string
	path  func(s *Store) string
	valid func(t *testing.T) []byte // content the store accepts
}

var fileKinds = []fileKind{
	{
		name:  "user",
		path:  func(s *Store) string { return s.UserPath("alice") },
		valid: func(t *testing.T) []byte { return mustMarshalUser(t, testUser()) },
	},
	{
		name:  "state",
		path:  func(s *Store) string { return s.StatePath("alice") },
		valid: func(t *testing.T) []byte { return mustMarshalState(t, testState()) },
	},
	{
		name:  "lock",
		path:  func(s *Store) string { return filepath.Join(s.Dir(), "locks", "alice.lock") },
		valid: func(t *testing.T) []byte { return nil },
	},
}

// attack replaces the file at path with something the store must refuse.
// It returns further paths (outside the store) whose content and mode must
// survive unchanged.
type attack struct {
	name  string
	root  bool // needs root
	setup func(t *testing.T, k fileKind, path string) []string
}

// replace removes what is at path and writes data there with mode.
func replace(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	chmod(t, path, mode)
}

func oversize(t *testing.T, k fileKind) []byte {
	data := k.valid(t)
	pad := "# " + strings.Repeat("x", 76) + "\n"
	for len(data) <= MaxFileSize {
		data = append(data, pad...)
	}
	return data
}

// fileAttacks are refused whatever the file is, and also refused as the
// target of a write: each is a sign of tampering to be looked at.
var fileAttacks = []attack{
	{name: "symlink", setup: func(t *testing.T, k fileKind, path string) []string {
		outside := outsideFile(t, []byte("outside, do not touch\n"), 0o644)
		os.Remove(path)
		if err := os.Symlink(outside, path); err != nil {
			t.Fatal(err)
		}
		return []string{outside}
	}},
	{name: "symlink to a valid file", setup: func(t *testing.T, k fileKind, path string) []string {
		// Mode 0600, owned by us, valid content: if the link were
		// followed, the store would accept the file.
		outside := outsideFile(t, k.valid(t), 0o600)
		os.Remove(path)
		if err := os.Symlink(outside, path); err != nil {
			t.Fatal(err)
		}
		return []string{outside}
	}},
	{name: "dangling symlink", setup: func(t *testing.T, k fileKind, path string) []string {
		outside := filepath.Join(t.TempDir(), "created-through-link")
		os.Remove(path)
		if err := os.Symlink(outside, path); err != nil {
			t.Fatal(err)
		}
		return []string{outside} // must still not exist
	}},
	{name: "hardlink", setup: func(t *testing.T, k fileKind, path string) []string {
		outside := outsideFile(t, []byte("outside, do not touch\n"), 0o644)
		os.Remove(path)
		if err := os.Link(outside, path); err != nil {
			t.Fatal(err)
		}
		return []string{outside}
	}},
	{name: "hardlink to a valid file", setup: func(t *testing.T, k fileKind, path string) []string {
		outside := outsideFile(t, k.valid(t), 0o600)
		os.Remove(path)
		if err := os.Link(outside, path); err != nil {
			t.Fatal(err)
		}
		return []string{outside}
	}},
	{name: "fifo", setup: func(t *testing.T, k fileKind, path string) []string {
		os.Remove(path)
		if err := unix.Mkfifo(path, 0o600); err != nil {
			t.Fatal(err)
		}
		return nil
	}},
	{name: "directory", setup: func(t *testing.T, k fileKind, path string) []string {
		os.Remove(path)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(path, "inside"), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		return []string{filepath.Join(path, "inside")}
	}},
	{name: "wrong owner", root: true, setup: func(t *testing.T, k fileKind, path string) []string {
		replace(t, path, k.valid(t), 0o600)
		if err := os.Lchown(path, foreignUID, foreignUID); err != nil {
			t.Fatal(err)
		}
		return nil
	}},
	{name: "mode 0640", setup: func(t *testing.T, k fileKind, path string) []string {
		replace(t, path, k.valid(t), 0o640)
		return nil
	}},
	{name: "mode 0604", setup: func(t *testing.T, k fileKind, path string) []string {
		replace(t, path, k.valid(t), 0o604)
		return nil
	}},
	{name: "mode 0606", setup: func(t *testing.T, k fileKind, path string) []string {
		replace(t, path, k.valid(t), 0o606)
		return nil
	}},
	{name: "over 64 KiB", setup: func(t *testing.T, k fileKind, path string) []string {
		replace(t, path, oversize(t, k), 0o600)
		return nil
	}},
}

// TestFileAttacks puts each attack in place of each per-user file and
// checks that every operation on it fails, names the path, and leaves the
// thing found there (and anything it points to) as it was.
func TestFileAttacks(t *testing.T) {
	for _, k := range fileKinds {
		for _, a := range fileAttacks {
			t.Run(k.name+"/"+a.name, func(t *testing.T) {
				if a.root {
					needRoot(t)
				}
				s := enrolledStore(t)
				path := k.path(s)
				var held *Lock
				if k.name != "lock" {
					// The writes below go through a lock held before
					// the attack is in place.
					var err error
					held, err = s.Lock("alice", time.Second)
					if err != nil {
						t.Fatalf("Lock: %v", err)
					}
					defer held.Unlock()
				}
				watch := a.setup(t, k, path)
				before := map[string]snapshot{path: snap(t, path)}
				for _, p := range watch {
					before[p] = snap(t, p)
				}
				for _, op := range opsOn(s, k.name, held, true) {
					err := within(t, hangLimit, op.name, op.run)
					wantRefused(t, op.name, err, path)
					if errors.Is(err, ErrNotEnrolled) {
						t.Errorf("%s: %v: refused as not enrolled, want an error", op.name, err)
					}
					if strings.Contains(a.name, "symlink") && err != nil && !strings.Contains(err.Error(), "symbolic link") {
						t.Errorf("%s: error %q does not say it met a symbolic link", op.name, err)
					}
				}
				checkUnchanged(t, before)
				for _, d := range []string{"users", "state"} {
					tmp := filepath.Join(s.Dir(), d, ".alice.toml.tmp")
					if _, err := os.Lstat(tmp); err == nil {
						t.Errorf("%s left behind", tmp)
					}
				}
			})
		}
	}
}

type op struct {
	name string
	run  func() error
}

// opsOn returns the operations that touch the kind of file. With writes,
// the writes through held are included.
func opsOn(s *Store, kind string, held *Lock, writes bool) []op {
	switch kind {
	case "user":
		ops := []op{
			{"Store.ReadUser", func() error { _, err := s.ReadUser("alice"); return err }},
			{"Lock.ReadUser", func() error { _, err := held.ReadUser(); return err }},
		}
		if writes {
			ops = append(ops, op{"Lock.WriteUser", func() error { return held.WriteUser(testUser()) }})
		}
		return ops
	case "state":
		ops := []op{
			{"Store.ReadState", func() error { _, err := s.ReadState("alice"); return err }},
			{"Lock.ReadState", func() error { _, err := held.ReadState(); return err }},
		}
		if writes {
			ops = append(ops, op{"Lock.WriteState", func() error { return held.WriteState(State{Failures: 1}) }})
		}
		return ops
	case "lock":
		return []op{{"Store.Lock", func() error {
			l, err := s.Lock("alice", 100*time.Millisecond)
			if err == nil {
				l.Unlock()
			}
			return err
		}}}
	}
	panic(kind)
}

// contentCase is a regular, well-owned file whose content is wrong.
type contentCase struct {
	name string
	data string
	// secret must not appear in the error (it might reach a log).
	secret string
}

func userContentCases(t *testing.T) []contentCase {
	valid := string(mustMarshalUser(t, testUser()))
	secretLine := `secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"`
	if !strings.Contains(valid, secretLine+"\n") {
		t.Fatalf("MarshalUser output changed; update the test:\n%s", valid)
	}
	with := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("%q not in %s", old, valid)
		}
		return strings.Replace(valid, old, new, 1)
	}
	var many []string
	for range maxBackupCodes + 1 {
		many = append(many, fmt.Sprintf("%q", testHash1))
	}
	return []contentCase{
		{name: "empty", data: ""},
		{name: "garbage", data: "\x00\xff\xfe not toml ][ \n"},
		{name: "not toml", data: "#!/bin/sh\nrm -rf /\n"},
		{name: "unterminated secret", data: with(secretLine+"\n", `secret = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ`+"\n"), secret: "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"},
		{name: "unquoted secret", data: with(secretLine, `secret = GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ`), secret: "GEZDGNBVGY"},
		{name: "invalid base32", data: with(secretLine, `secret = "GEZDGNBVGY3TQOJQ!EZDGNBVGY3TQ019"`), secret: "GEZDGNBVGY3TQOJQ"},
		{name: "secret 120 bits", data: with(secretLine, `secret = "GEZDGNBVGY3TQOJQGEZDGNBV"`), secret: "GEZDGNBVGY3TQOJQGEZDGNBV"},
		{name: "empty secret", data: with(secretLine, `secret = ""`)},
		{name: "unknown key", data: valid + "shell = \"/bin/sh\"\n"},
		{name: "unknown table", data: valid + "[extra]\nx = 1\n"},
		{name: "version 3", data: with("version = 2", "version = 3")},
		{name: "version 0", data: with("version = 2", "version = 0")},
		{name: "no version", data: with("version = 2\n", "")},
		{name: "no authenticator", data: strings.Split(valid, "[[authenticator]]")[0]},
		{name: "no label", data: with(`label = "default"`+"\n", "")},
		{name: "bad label", data: with(`label = "default"`, `label = "de fault"`)},
		{name: "label twice", data: valid + valid[strings.Index(valid, "[[authenticator]]"):]},
		{name: "nine authenticators", data: nine(valid)},
		{name: "no secret", data: with(secretLine+"\n", "")},
		{name: "no digits", data: with("digits = 6\n", "")},
		{name: "wrong type", data: with("digits = 6", `digits = "six"`)},
		{name: "algorithm MD5", data: with(`algorithm = "SHA1"`, `algorithm = "MD5"`)},
		{name: "digits 7", data: with("digits = 6", "digits = 7")},
		{name: "period 0", data: with("period = 30", "period = 0")},
		{name: "foreign hash", data: with(testHash1, "$argon2id$v=19$m=4194304,t=100,p=1$FGQqI+l4pheonsPl0bYebg$mbEuFCkwYl2th5Kfn+tr+7UPdB79jwxPW+fWbZv0164")},
		{name: "too many hashes", data: with(fmt.Sprintf("%q, %q", testHash1, testHash2), strings.Join(many, ", "))},
	}
}

func stateContentCases(t *testing.T) []contentCase {
	valid := string(mustMarshalState(t, testState()))
	with := func(old, new string) string {
		if !strings.Contains(valid, old) {
			t.Fatalf("%q not in %s", old, valid)
		}
		return strings.Replace(valid, old, new, 1)
	}
	return []contentCase{
		{name: "empty", data: ""},
		{name: "garbage", data: "\x00\xff\xfe not toml ][ \n"},
		{name: "unknown key", data: valid + "admin = true\n"},
		{name: "version 3", data: with("version = 2", "version = 3")},
		{name: "no version", data: with("version = 2\n", "")},
		{name: "no failures", data: with("failures = 3\n", "")},
		{name: "bad label", data: with(`label = "default"`, `label = "a/b"`)},
		{name: "label twice", data: valid + "\n[[authenticator]]\nlabel = \"default\"\nlast_step = 1\n"},
		{name: "v1 without last_step", data: "version = 1\nfailures = 0\n"},
		{name: "negative failures", data: with("failures = 3", "failures = -1")},
		{name: "negative last_step", data: with("last_step = 56789012", "last_step = -5")},
		{name: "wrong type", data: with("failures = 3", `failures = "3"`)},
		{name: "bad time", data: with("locked_until = 2030-01-02T03:04:05Z", `locked_until = "tomorrow"`)},
	}
}

// TestContentAttacks: a well-formed file with bad content is refused by
// every read, with an error that names the path and never quotes the
// secret. A write through the lock may replace it: that is how
// "otpgate enroll --force" and "otpgate unlock" repair such a file.
func TestContentAttacks(t *testing.T) {
	kinds := map[string][]contentCase{"user": userContentCases(t), "state": stateContentCases(t)}
	for _, k := range fileKinds[:2] {
		for _, c := range kinds[k.name] {
			t.Run(k.name+"/"+c.name, func(t *testing.T) {
				s := enrolledStore(t)
				path := k.path(s)
				replace(t, path, []byte(c.data), 0o600)
				before := map[string]snapshot{path: snap(t, path)}
				held, err := s.Lock("alice", time.Second)
				if err != nil {
					t.Fatalf("Lock: %v", err)
				}
				defer held.Unlock()
				for _, op := range opsOn(s, k.name, held, false) {
					err := within(t, hangLimit, op.name, op.run)
					wantRefused(t, op.name, err, path)
					if errors.Is(err, ErrNotEnrolled) {
						t.Errorf("%s: %v: refused as not enrolled, want an error", op.name, err)
					}
					if err != nil && c.secret != "" && strings.Contains(err.Error(), c.secret) {
						t.Errorf("%s: error %q quotes the secret", op.name, err)
					}
				}
				checkUnchanged(t, before)

				// Repair.
				switch k.name {
				case "user":
					if err := held.WriteUser(testUser()); err != nil {
						t.Fatalf("WriteUser over a broken file: %v", err)
					}
					if u, err := s.ReadUser("alice"); err != nil || !equalUser(u, testUser()) {
						t.Errorf("after repair: ReadUser = %+v, %v", u, err)
					}
				case "state":
					if err := held.WriteState(State{}); err != nil {
						t.Fatalf("WriteState over a broken file: %v", err)
					}
					if st, err := s.ReadState("alice"); err != nil || !equalState(st, State{}) {
						t.Errorf("after repair: ReadState = %+v, %v", st, err)
					}
				}
			})
		}
	}
}

// The lock file's content does not matter, only what the file is.
func TestLockFileContentIgnored(t *testing.T) {
	s := enrolledStore(t)
	path := filepath.Join(s.Dir(), "locks", "alice.lock")
	replace(t, path, []byte("garbage \x00\xff"), 0o600)
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatalf("Lock with content in the lock file: %v", err)
	}
	l.Unlock()
	if got, _ := os.ReadFile(path); string(got) != "garbage \x00\xff" {
		t.Errorf("Lock changed the lock file's content to %q", got)
	}
}

// A file of exactly MaxFileSize bytes is still read.
func TestFileSizeLimit(t *testing.T) {
	s := enrolledStore(t)
	data := mustMarshalUser(t, testUser())
	// Padding as comment lines, each under tomlshape's line bound.
	for len(data) < MaxFileSize {
		n := min(MaxFileSize-len(data), 1000)
		data = append(data, '#')
		data = append(data, strings.Repeat("x", n-2)...)
		data = append(data, '\n')
	}
	if len(data) != MaxFileSize {
		t.Fatalf("test file is %d bytes", len(data))
	}
	replace(t, s.UserPath("alice"), data, 0o600)
	if _, err := s.ReadUser("alice"); err != nil {
		t.Errorf("ReadUser of a %d-byte file: %v", len(data), err)
	}
	replace(t, s.UserPath("alice"), append(data, '\n'), 0o600)
	wantRefused(t, "ReadUser of a file one byte over", func() error { _, err := s.ReadUser("alice"); return err }(), s.UserPath("alice"))
}

// The owner's execute bit is not a group or world bit: 0700 is accepted.
func TestOwnerOnlyModes(t *testing.T) {
	s := enrolledStore(t)
	chmod(t, s.UserPath("alice"), 0o400)
	if _, err := s.ReadUser("alice"); err != nil {
		t.Errorf("ReadUser of a 0400 file: %v", err)
	}
}

// nine returns the user file valid with its authenticator repeated under
// eight more labels: one over MaxAuthenticators.
func nine(valid string) string {
	i := strings.Index(valid, "[[authenticator]]")
	out := valid
	for n := 2; n <= MaxAuthenticators+1; n++ {
		out += strings.Replace(valid[i:], `label = "default"`, fmt.Sprintf(`label = "a%d"`, n), 1)
	}
	return out
}
