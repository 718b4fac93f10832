package main_test

// Store faults: the store on a small tmpfs that fills up, and a store that
// turns read-only. Each test runs its body in a child test process in a
// private mount namespace, so its tmpfs disappears with that process even
// when the test is killed: no mount outlives it.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/backupcode"
	"github.com/otpgate/otpgate/internal/testbin"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// requireToolsEnv turns a skip for a missing tool or privilege into a
// failure (scripts/test.sh sets it as root).
const requireToolsEnv = "OTPGATE_REQUIRE_TOOLS"

// Set in the child test process: the test to run, and the otpgate binary
// the parent built.
const (
	mountNSEnv = "OTPGATE_TEST_MOUNT_NS"
	faultBin   = "OTPGATE_TEST_BIN"
)

func skipOrFail(t testing.TB, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(requireToolsEnv) != "" {
		t.Fatalf("%s (%s is set, so this is a failure, not a skip)", msg, requireToolsEnv)
	}
	t.Skip(msg)
}

// inMountNamespace returns true in the child test process, which runs in a
// private mount namespace. In the parent it runs the calling test again as
// that child, reports its outcome and returns false.
func inMountNamespace(t *testing.T) bool {
	t.Helper()
	if os.Getenv(mountNSEnv) == t.Name() {
		return true
	}
	if os.Geteuid() != 0 {
		skipOrFail(t, "%s mounts a tmpfs, which needs root; run as root: go test -count=1 -run %s ./cmd/otpgate/", t.Name(), t.Name())
	}
	bin := testbin.Build(t, "cmd/otpgate")
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+t.Name()+"$", "-test.count=1", "-test.v", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), mountNSEnv+"="+t.Name(), faultBin+"="+bin)
	// Go makes / private (MS_REC|MS_PRIVATE) in the new namespace, so the
	// child's mounts never propagate back.
	cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	out, err := cmd.CombinedOutput()
	if errors.Is(err, syscall.EPERM) {
		skipOrFail(t, "cannot make a mount namespace for %s (no CAP_SYS_ADMIN?): %v", t.Name(), err)
	}
	if err != nil || !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatalf("%s in a private mount namespace: %v\n%s", t.Name(), err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "_test.go:") {
			t.Log(strings.TrimSpace(line))
		}
	}
	return false
}

// tmpfsStore mounts a tmpfs of size bytes on a new directory, unmounted
// when the test ends, and returns an env whose store is on it.
func tmpfsStore(t *testing.T, size int, extra string) (*env, string) {
	t.Helper()
	dir := t.TempDir()
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", mnt, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Fatalf("mount -t tmpfs on %s: %v", mnt, err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(mnt, 0); err != nil {
			t.Errorf("umount %s: %v", mnt, err)
			unix.Unmount(mnt, unix.MNT_DETACH)
		}
	})
	bin := os.Getenv(faultBin)
	if bin == "" {
		bin = testbin.Build(t, "cmd/otpgate")
	}
	e := &env{t: t, bin: bin, config: filepath.Join(dir, "config.toml"), store: filepath.Join(mnt, "store")}
	cfg := fmt.Sprintf("issuer = \"test\"\nstore = %q\n%s", e.store, extra)
	if err := os.WriteFile(e.config, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return e, mnt
}

// fill writes a file on the filesystem of dir until it is full, and
// returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, chunk := range []int{64 << 10, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for {
			if _, err := f.Write(buf); err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("filling %s: %v", dir, err)
				}
				break
			}
		}
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if st.Bavail != 0 || st.Bfree != 0 {
		t.Fatalf("%s still has %d free blocks after the filler", dir, st.Bfree)
	}
	return path
}

// storeFiles returns the bytes of user's user and state files.
func storeFiles(t *testing.T, e *env, user string) (userFile, stateFile []byte) {
	t.Helper()
	s := keystore.New(e.store)
	u, err := os.ReadFile(s.UserPath(user))
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.ReadFile(s.StatePath(user))
	if err != nil {
		t.Fatal(err)
	}
	return u, st
}

// wrongTOTP returns a six-digit code that is not secret's code for any
// step near now.
func wrongTOTP(t *testing.T, e *env, secret string) string {
	t.Helper()
	s, err := keystore.DecodeSecret(secret)
	if err != nil {
		t.Fatal(err)
	}
	now := totp.Step(time.Now(), 30)
next:
	for n := 0; ; n++ {
		c := fmt.Sprintf("%06d", n*111111%1000000)
		for step := now - 3; step <= now+3; step++ {
			if want, _ := totp.CodeAt(s, uint64(step), totp.Default); want == c {
				continue next
			}
		}
		return c
	}
}

// storeFault breaks the store under an enrolled user with breakIt, checks
// that every kind of attempt is denied naming cause and changes nothing,
// then repairs it and checks that codes work and failures count again.
func storeFault(t *testing.T, e *env, breakIt, repair func(), cause string) {
	en := e.enroll("alice")
	// Something to lose: an accepted step and a counted failure.
	if _, stderr, code := e.runWithin(10*time.Second, e.code(en.Secret, -1)+"\n", "verify", "--user", "alice"); code != 0 {
		t.Fatalf("right code before the fault: exit %d: %s", code, stderr)
	}
	if _, stderr, code := e.runWithin(10*time.Second, "000000x\n", "verify", "--user", "alice"); code != 1 {
		t.Fatalf("malformed code before the fault: exit %d: %s", code, stderr)
	}
	before := e.state("alice")
	userBytes, stateBytes := storeFiles(t, e, "alice")

	breakIt()
	right := e.code(en.Secret, 0)
	badBackup, err := backupcode.New(1)
	if err != nil {
		t.Fatal(err)
	}
	attempts := []struct{ name, input string }{
		{"right code", right},
		{"wrong code", wrongTOTP(t, e, en.Secret)},
		{"right backup code", en.BackupCodes[0]},
		{"wrong backup code", badBackup[0]},
		{"malformed code", "hello"},
	}
	stderrs := map[string]string{}
	// More rounds than max_failures: nothing may count, lock or spend,
	// and nothing may be accepted.
	for round := range 3 * len(attempts) {
		a := attempts[round%len(attempts)]
		_, stderr, code := e.runWithin(10*time.Second, a.input+"\n", "verify", "--user", "alice")
		if code != 2 || !strings.Contains(stderr, cause) || !strings.Contains(stderr, e.store) || !strings.Contains(stderr, "denied") {
			t.Errorf("%s on a broken store: exit %d, %q; want exit 2, a denial naming %q and a file in %s", a.name, code, stderr, cause, e.store)
		}
		stderrs[a.name] = stderr
		u, st := storeFiles(t, e, "alice")
		if !bytes.Equal(u, userBytes) || !bytes.Equal(st, stateBytes) {
			t.Fatalf("%s on a broken store changed a file:\nuser before %q\nuser after  %q\nstate before %q\nstate after  %q", a.name, userBytes, u, stateBytes, st)
		}
	}
	// A failed write is a denial for a right and a wrong code alike: the
	// answer must not tell them apart.
	if stderrs["right code"] != stderrs["wrong code"] {
		t.Errorf("right and wrong code answered differently on a broken store:\n%q\n%q", stderrs["right code"], stderrs["wrong code"])
	}
	t.Logf("a right code on the broken store: %q", stderrs["right code"])
	if stderrs["right backup code"] != stderrs["wrong backup code"] {
		t.Errorf("right and wrong backup code answered differently on a broken store:\n%q\n%q", stderrs["right backup code"], stderrs["wrong backup code"])
	}
	if _, err := keystore.New(e.store).ReadUser("alice"); err != nil {
		t.Errorf("user file after the fault: %v", err)
	}
	if st := e.state("alice"); !reflect.DeepEqual(st, before) {
		t.Errorf("state after the fault: %+v, want %+v", st, before)
	}

	repair()
	// The code denied during the fault was never used: it works now.
	if _, stderr, code := e.runWithin(10*time.Second, right+"\n", "verify", "--user", "alice"); code != 0 || !strings.Contains(stderr, "accepted (totp)") {
		t.Fatalf("right code after the repair: exit %d, %q", code, stderr)
	}
	st := e.state("alice")
	if st.Failures != 0 || st.LastStep(keystore.DefaultLabel) <= before.LastStep(keystore.DefaultLabel) {
		t.Errorf("state after a right code: %+v; want no failures and last_step after %d", st, before.LastStep(keystore.DefaultLabel))
	}
	for want := 1; want <= 2; want++ {
		if _, stderr, code := e.runWithin(10*time.Second, wrongTOTP(t, e, en.Secret)+"\n", "verify", "--user", "alice"); code != 1 || !strings.Contains(stderr, fmt.Sprintf("(%d of", want)) {
			t.Errorf("wrong code %d after the repair: exit %d, %q", want, code, stderr)
		}
		if st := e.state("alice"); st.Failures != want {
			t.Errorf("failures after wrong code %d after the repair = %d", want, st.Failures)
		}
	}
	// The backup code tried during the fault was not spent.
	if _, stderr, code := e.runWithin(10*time.Second, en.BackupCodes[0]+"\n", "verify", "--user", "alice"); code != 0 || !strings.Contains(stderr, "accepted (backup)") {
		t.Errorf("backup code after the repair: exit %d, %q", code, stderr)
	}
	if _, stderr, code := e.runWithin(10*time.Second, en.BackupCodes[0]+"\n", "verify", "--user", "alice"); code != 1 {
		t.Errorf("the same backup code again: exit %d, %q; want 1", code, stderr)
	}
}

const faultConfig = "[lockout]\nmax_failures = 3\nlock_duration = \"1h\"\n[backup_codes]\ncount = 4\n"

// TestStoreFull puts the store on a 256 KiB tmpfs and fills it: every
// attempt is denied naming the full disk, no file changes, and once space
// returns the same codes work and failures count.
func TestStoreFull(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	e, mnt := tmpfsStore(t, 256<<10, faultConfig)
	var filler string
	storeFault(t, e, func() { filler = fill(t, mnt) }, func() {
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
	}, "no space left on device")
}

// TestStoreReadOnly remounts the store's tmpfs read-only: every attempt is
// denied naming the read-only file system, no file changes, and after a
// remount read-write the same codes work and failures count.
func TestStoreReadOnly(t *testing.T) {
	if !inMountNamespace(t) {
		return
	}
	e, mnt := tmpfsStore(t, 256<<10, faultConfig)
	remount := func(flags uintptr) {
		if err := unix.Mount("", mnt, "", unix.MS_REMOUNT|unix.MS_NOSUID|unix.MS_NODEV|flags, ""); err != nil {
			t.Fatalf("remount %s: %v", mnt, err)
		}
	}
	storeFault(t, e, func() { remount(unix.MS_RDONLY) }, func() { remount(0) }, "read-only file system")
}
