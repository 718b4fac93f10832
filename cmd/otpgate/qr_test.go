package main_test

import (
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// need skips the test when a tool is missing (make test installs them as
// root) and fails it when the tests run in CI, where they must be present.
func need(t *testing.T, tool, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		if os.Getenv("OTPGATE_REQUIRE_TOOLS") != "" {
			t.Fatalf("%s (Debian package %s) is missing", tool, pkg)
		}
		t.Skipf("%s missing: apt-get install %s (make test does this as root)", tool, pkg)
	}
}

// TestQRCodeAndOathtool decodes the PNG QR code with zbarimg (zbar-tools)
// and checks it is exactly the URI --json reports, and that an independent
// implementation, oathtool, computes codes otpgate accepts from it.
func TestQRCodeAndOathtool(t *testing.T) {
	need(t, "zbarimg", "zbar-tools")
	need(t, "oathtool", "oathtool")
	e := newEnv(t, "")
	png := filepath.Join(t.TempDir(), "qr.png")
	en := e.enroll("alice@example.com", "--qr-png", png)
	fi, err := os.Stat(png)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("--qr-png file: %v, mode %v; want 0600 (it holds the secret)", err, fi.Mode())
	}
	out, err := exec.Command("zbarimg", "--quiet", "--raw", png).Output()
	if err != nil {
		t.Fatalf("zbarimg: %v", err)
	}
	if got := strings.TrimSpace(string(out)); got != en.URI {
		t.Fatalf("QR code holds %q\n--json says  %q", got, en.URI)
	}
	u, err := url.Parse(en.URI)
	if err != nil || u.Scheme != "otpauth" || u.Host != "totp" || u.Path != "/test:alice@example.com" {
		t.Fatalf("URI %q: %v", en.URI, err)
	}
	q := u.Query()
	if q.Get("secret") != en.Secret || q.Get("issuer") != "test" || q.Get("digits") != "6" || q.Get("period") != "30" || q.Get("algorithm") != "SHA1" {
		t.Errorf("URI parameters %v", q)
	}
	if len(en.Secret) != 32 { // 160 bits in base32
		t.Errorf("secret %q is not 160 bits", en.Secret)
	}
	// oathtool's code for now, from the URI's secret, must be ours.
	at := time.Now()
	code, err := exec.Command("oathtool", "--totp", "-b", "--now", at.UTC().Format("2006-01-02 15:04:05 UTC"), q.Get("secret")).Output()
	if err != nil {
		t.Fatalf("oathtool: %v", err)
	}
	if got, want := strings.TrimSpace(string(code)), e.codeAt(en.Secret, at); got != want {
		t.Errorf("oathtool says %s, otpgate computes %s", got, want)
	}
	if _, stderr, rc := e.run(string(code), "verify", "--user", "alice@example.com"); rc != 0 {
		t.Errorf("otpgate verify of oathtool's code: exit %d %s", rc, stderr)
	}
	// The PNG is never written over an existing file or through a link.
	if _, stderr, rc := e.run("", "enroll", "--user", "bob", "--force", "--no-confirm", "--qr", "none", "--qr-png", png); rc != 2 || !strings.Contains(stderr, "exists") {
		t.Errorf("--qr-png over an existing file: exit %d %q", rc, stderr)
	}
}
