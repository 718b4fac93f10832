package pamtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

var entryPoints = []string{"pam_sm_acct_mgmt", "pam_sm_authenticate", "pam_sm_chauthtok", "pam_sm_close_session", "pam_sm_open_session", "pam_sm_setcred"}

// TestExports: the module exports the six PAM entry points and nothing
// else (the version script), per nm -D.
func TestExports(t *testing.T) {
	needRoot(t)
	out, err := exec.Command("nm", "-D", "--defined-only", modulePath).Output()
	if err != nil {
		t.Skipf("nm: %v", err)
	}
	var syms []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		syms = append(syms, f[len(f)-1])
	}
	slices.Sort(syms)
	if !slices.Equal(syms, entryPoints) {
		t.Fatalf("exported %q, want %q", syms, entryPoints)
	}
}

// TestDlopen loads the module with dlopen(RTLD_NOW), as libpam does: every
// symbol resolves, the entry points are found and the internals are not.
func TestDlopen(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	src := filepath.Join(dir, "dlopen.c")
	prog := `#include <dlfcn.h>
#include <stdio.h>
int main(int argc, char **argv) {
	void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (!h) { printf("dlopen: %s\n", dlerror()); return 1; }
	for (int i = 2; i < argc; i++) {
		int hidden = argv[i][0] == '-';
		void *p = dlsym(h, argv[i] + hidden);
		if ((p == NULL) != hidden) { printf("%s: %s\n", argv[i] + hidden, p ? "visible" : "missing"); return 1; }
	}
	return dlclose(h);
}
`
	if err := os.WriteFile(src, []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "dlopen")
	if b, err := exec.Command("cc", "-o", bin, src, "-ldl").CombinedOutput(); err != nil {
		t.Fatalf("cc: %v\n%s", err, b)
	}
	args := append([]string{modulePath}, entryPoints...)
	args = append(args, "-parse_args", "-check_program", "-safe_path", "-child", "-reap", "-io_full", "-relay", "-reset_limits")
	if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
}
