package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// manPages are the pages make man builds, each from docs/man/PAGE.md.
var manPages = []string{"otpgate.1", "otpgate.toml.5", "pam_otpgate.8", "otpgate-helper.8"}

// TestManPages renders each page as make man does (go tool go-md2man)
// and requires `MANWIDTH=80 man --warnings -l` to print no warning.
func TestManPages(t *testing.T) {
	manCmd := needTool(t, "man", "man-db")
	goCmd := goTool(t)
	root := repoRoot(t)
	out := t.TempDir()
	for _, page := range manPages {
		t.Run(page, func(t *testing.T) {
			src, err := os.ReadFile(filepath.Join(root, "docs/man", page+".md"))
			if err != nil {
				t.Fatal(err)
			}
			md := strings.ReplaceAll(string(src), "@VERSION@", "test")
			roff, err := runErr(2*time.Minute, root, nil, md, goCmd, "tool", "go-md2man")
			if err != nil {
				t.Fatalf("go-md2man: %v\n%s", err, roff)
			}
			path := filepath.Join(out, page)
			if err := os.WriteFile(path, []byte(roff), 0o644); err != nil {
				t.Fatal(err)
			}
			// Warnings go to standard error; the text itself is
			// dropped.
			text, err := runErr(time.Minute, out, []string{"MANWIDTH=80", "MAN_KEEP_FORMATTING=", "LC_ALL=C.UTF-8"}, "",
				"sh", "-c", `"$0" --warnings -l "$1" 2>&1 >/dev/null`, manCmd, path)
			if err != nil {
				t.Fatalf("man --warnings -l %s: %v\n%s", page, err, text)
			}
			if strings.TrimSpace(text) != "" {
				t.Errorf("man --warnings -l %s printed warnings:\n%s", page, text)
			}
			rendered, err := runErr(time.Minute, out, []string{"MANWIDTH=80", "LC_ALL=C.UTF-8"}, "", manCmd, "-l", path)
			if err != nil || !strings.Contains(rendered, "NAME") || !strings.Contains(rendered, "SEE ALSO") {
				t.Errorf("man -l %s: %v; it shows no NAME or SEE ALSO section:\n%s", page, err, rendered)
			}
		})
	}
}

// TestManConfigKeys checks that otpgate.toml(5) documents every key of
// contrib/config.toml, which internal/config checks against the defaults.
func TestManConfigKeys(t *testing.T) {
	root := repoRoot(t)
	example, err := os.ReadFile(filepath.Join(root, "contrib/config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	page, err := os.ReadFile(filepath.Join(root, "docs/man/otpgate.toml.5.md"))
	if err != nil {
		t.Fatal(err)
	}
	keys := regexp.MustCompile(`(?m)^#?([a-z_]+) *=`).FindAllStringSubmatch(string(example), -1)
	if len(keys) < 5 {
		t.Fatalf("found only %d keys in contrib/config.toml", len(keys))
	}
	for _, k := range keys {
		if !strings.Contains(string(page), "**"+k[1]+"** =") {
			t.Errorf("docs/man/otpgate.toml.5.md does not document %s", k[1])
		}
	}
	for _, table := range regexp.MustCompile(`(?m)^\[[a-z_]+\]`).FindAllString(string(example), -1) {
		if !strings.Contains(string(page), "**"+table+"**") {
			t.Errorf("docs/man/otpgate.toml.5.md does not document the table %s", table)
		}
	}
}
