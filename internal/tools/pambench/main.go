// Command pambench compares one authentication through pam_otpgate (C
// module, exec of the Go helper) with the same through
// google-authenticator-libpam (Debian's libpam-google-authenticator, all
// in-process C), both driven by pamtester, in the same run on the same
// machine. It prints the ratio of median wall time and of median CPU time
// (pamtester and everything it waited for), and the helper's peak RSS.
//
// Both are given a wrong code (a right one works once per 30 s): each
// module reads its files, computes the codes of its window and denies.
// otpgate also counts the attempt with an fsynced write, as its design
// requires; google-authenticator, without RATE_LIMIT, writes nothing.
//
// Run as root: go run ./internal/tools/pambench [-n 60]
package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"time"

	"github.com/otpgate/otpgate/internal/protocol"
)

const gaModule = "pam_google_authenticator.so"

func main() {
	n := flag.Int("n", 60, "authentications per module")
	flag.Parse()
	if err := run(*n); err != nil {
		fmt.Fprintln(os.Stderr, "pambench:", err)
		os.Exit(1)
	}
}

type sample struct{ wall, cpu time.Duration }

func run(n int) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("run as root: the services go into /etc/pam.d and the helper must be root-owned")
	}
	if _, err := exec.LookPath("pamtester"); err != nil {
		return fmt.Errorf("pamtester is missing: apt-get install pamtester libpam-google-authenticator")
	}
	root, err := os.Getwd()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "otpgate-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	os.Chmod(dir, 0o755)

	// The module and helper, built as make builds them.
	helper := filepath.Join(dir, "otpgate-helper")
	otpgate := filepath.Join(dir, "otpgate")
	for _, b := range [][]string{
		{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", helper, "./cmd/otpgate-helper"},
		{"go", "build", "-trimpath", "-ldflags=-s -w", "-o", otpgate, "./cmd/otpgate"},
		{"make", "-s", "pam"},
	} {
		cmd := exec.Command(b[0], b[1:]...)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("%v: %v\n%s", b, err, out)
		}
	}
	module := filepath.Join(root, "build", "pam_otpgate.so")

	// otpgate: a store with root enrolled, and a lockout that never trips.
	config := filepath.Join(dir, "config.toml")
	os.WriteFile(config, []byte(fmt.Sprintf("store = %q\n[lockout]\nmax_failures = 100\n", filepath.Join(dir, "store"))), 0o644)
	out, err := exec.Command(otpgate, "--config", config, "enroll", "--user", "root", "--no-confirm", "--json", "--qr", "none").Output()
	if err != nil {
		return fmt.Errorf("enroll: %v", err)
	}
	secret := between(string(out), `"secret": "`, `"`)

	// google-authenticator: the same secret in its file format.
	gaFile := filepath.Join(dir, "google_authenticator")
	os.WriteFile(gaFile, []byte(secret+"\n\" TOTP_AUTH\n\" DISALLOW_REUSE\n\" WINDOW_SIZE 3\n"), 0o400)

	suffix := randHex()
	otpSvc, gaSvc := "otpgate-bench-"+suffix, "gauth-bench-"+suffix
	services := map[string]string{
		otpSvc: fmt.Sprintf("auth required %s helper=%s config=%s\n", module, helper, config),
		gaSvc:  fmt.Sprintf("auth required %s secret=%s user=root\n", gaModule, gaFile),
	}
	for name, body := range services {
		path := filepath.Join("/etc/pam.d", name)
		if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
			return err
		}
		defer os.Remove(path)
	}

	// Warm up both (page cache, first exec), then alternate.
	var otp, ga []sample
	for i := -3; i < n; i++ {
		a, err := pamtester(otpSvc)
		if err != nil {
			return err
		}
		b, err := pamtester(gaSvc)
		if err != nil {
			return err
		}
		if i >= 0 {
			otp, ga = append(otp, a), append(ga, b)
		}
		if i%90 == 89 {
			exec.Command(otpgate, "--config", config, "unlock", "--user", "root").Run()
		}
	}
	var alone []sample
	var rss int64
	for i := 0; i < n; i++ {
		h, err := helperAlone(helper, config)
		if err != nil {
			return err
		}
		alone = append(alone, sample{h.wall, h.cpu})
		rss = max(rss, h.rss)
	}
	hw, hc := medians(alone)
	ow, oc := medians(otp)
	gw, gc := medians(ga)
	fmt.Printf("pamtester authenticate, wrong code, n=%d each, medians\n", n)
	fmt.Printf("  google-authenticator-libpam  wall %8v  cpu %8v\n", gw, gc)
	fmt.Printf("  otpgate (module + helper)    wall %8v  cpu %8v\n", ow, oc)
	fmt.Printf("  ratio otpgate/anchor         wall %.2fx     cpu %.2fx\n", float64(ow)/float64(gw), float64(oc)/float64(gc))
	fmt.Printf("  otpgate-helper alone         wall %8v  cpu %8v  peak RSS %d KiB\n", hw, hc, rss)
	return nil
}

// pamtester runs one authentication with a wrong code and measures it.
func pamtester(service string) (sample, error) {
	cmd := exec.Command("pamtester", service, "root", "authenticate")
	cmd.Stdin = strings.NewReader("000000\n")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err == nil {
		return sample{}, fmt.Errorf("%s accepted a wrong code", service)
	}
	if !strings.Contains(out.String(), "Authentication failure") && !strings.Contains(out.String(), "Authentication token") {
		return sample{}, fmt.Errorf("%s: unexpected pamtester output %q", service, out.String())
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return sample{wall, cpu}, nil
}

type helperRun struct {
	wall, cpu time.Duration
	rss       int64 // KiB
}

// helperAlone runs the helper once, as the module does, answering its
// prompt with a wrong code, and measures it.
func helperAlone(helper, config string) (helperRun, error) {
	start := time.Now()
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return helperRun{}, err
	}
	ours, theirs := os.NewFile(uintptr(fds[0]), "bench"), os.NewFile(uintptr(fds[1]), "helper")
	cmd := exec.Command(helper)
	cmd.Stdin, cmd.Stdout, cmd.Env = theirs, theirs, []string{}
	if err := cmd.Start(); err != nil {
		return helperRun{}, err
	}
	theirs.Close()
	c, err := net.FileConn(ours)
	ours.Close()
	if err != nil {
		return helperRun{}, err
	}
	defer c.Close()
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "root", Service: "bench", Args: []string{"config=" + config}}
	p, err := req.Encode()
	if err != nil {
		return helperRun{}, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	if err := protocol.WriteFrame(c, protocol.Frame{Type: protocol.TypeRequest, Payload: p}); err != nil {
		return helperRun{}, err
	}
	for {
		f, err := protocol.ReadFrame(c)
		if err != nil {
			return helperRun{}, err
		}
		if f.Type == protocol.TypePromptEchoOff || f.Type == protocol.TypePromptEchoOn {
			protocol.WriteFrame(c, protocol.Frame{Type: protocol.TypeAnswer, Payload: []byte("000000")})
		}
		if f.Type == protocol.TypeResult {
			break
		}
	}
	cmd.Wait()
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	return helperRun{time.Since(start), time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), ru.Maxrss}, nil
}

func medians(s []sample) (wall, cpu time.Duration) {
	w := make([]time.Duration, len(s))
	c := make([]time.Duration, len(s))
	for i, x := range s {
		w[i], c[i] = x.wall, x.cpu
	}
	return median(w), median(c)
}

func median(d []time.Duration) time.Duration {
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	return d[len(d)/2]
}

func between(s, start, end string) string {
	_, rest, _ := strings.Cut(s, start)
	v, _, _ := strings.Cut(rest, end)
	return v
}

func randHex() string {
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}
