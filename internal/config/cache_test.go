package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// later is a clock an hour ahead, so that a file just written is past
// racyWindow and its parse is kept.
func later() time.Time { return time.Now().Add(time.Hour) }

func putConfig(t *testing.T, path, body string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCacheSeesEveryChange: a kept parse is never used for a file that
// changed in any way, however the change hides itself: rewritten in place
// to the same size with its mtime put back, chmod'ed, replaced by a bad
// file, by a symbolic link, removed.
func TestCacheSeesEveryChange(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "config.toml")
	// Two bodies of the same length: only the window differs.
	a, b := "window = 1\n# padding\n", "window = 3\n# padding\n"
	putConfig(t, path, a)
	c := &Cache{Now: later}
	load := func(string) (Config, error) {
		t.Helper()
		cfg, err := c.Load(path)
		return cfg, err
	}
	for i := range 2 {
		cfg, err := load("first")
		if err != nil || cfg.Window != 1 {
			t.Fatalf("load %d: %+v %v", i, cfg.Window, err)
		}
	}
	if len(c.entries) != 1 {
		t.Fatalf("the parse was not kept: %d entries", len(c.entries))
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	// Same inode, same size, same mtime: only ctime tells.
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte(b), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if err := os.Chtimes(path, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	if cfg, err := load("rewritten"); err != nil || cfg.Window != 3 {
		t.Fatalf("after a rewrite in place: window %d, %v; want 3", cfg.Window, err)
	}
	// chmod: the file is refused at once, and again after the first time.
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := load("chmod"); err == nil || !strings.Contains(err.Error(), "writable") {
			t.Fatalf("group/world-writable config accepted: %v", err)
		}
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if cfg, err := load("chmod back"); err != nil || cfg.Window != 3 {
		t.Fatalf("after chmod back: %d %v", cfg.Window, err)
	}
	// Replaced by a bad file (rename, a new inode).
	bad := filepath.Join(dir, "bad.toml")
	putConfig(t, bad, "window = \n")
	if err := os.Rename(bad, path); err != nil {
		t.Fatal(err)
	}
	if _, err := load("bad"); err == nil {
		t.Fatal("a bad config replacing a kept one was accepted")
	}
	// Replaced by a symbolic link to a good file.
	good := filepath.Join(dir, "good.toml")
	putConfig(t, good, a)
	os.Remove(path)
	if err := os.Symlink(good, path); err != nil {
		t.Fatal(err)
	}
	if _, err := load("symlink"); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("symlinked config: %v", err)
	}
	// Removed: an explicit path that is gone is an error, not a kept parse.
	os.Remove(path)
	if _, err := load("removed"); err == nil {
		t.Fatal("a removed config was served from the cache")
	}
}

// TestCacheRacyWindow: the parse of a file changed less than racyWindow
// before it is not kept (its times may not move on a second change within
// the same clock tick); it is read again on the next Load.
func TestCacheRacyWindow(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	putConfig(t, path, "window = 2\n")
	c := &Cache{} // the real clock: the file was changed just now
	if cfg, err := c.Load(path); err != nil || cfg.Window != 2 {
		t.Fatalf("%d %v", cfg.Window, err)
	}
	if len(c.entries) != 0 {
		t.Fatal("the parse of a file changed just now was kept")
	}
	c.Now = later
	if _, err := c.Load(path); err != nil || len(c.entries) != 1 {
		t.Fatalf("the parse of a settled file was not kept: %v, %d entries", err, len(c.entries))
	}
}

// TestCacheCopies: a caller changing what Load returned cannot change
// what the next caller gets.
func TestCacheCopies(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	putConfig(t, path, "[policy]\nexempt_users = [\"alice\"]\n")
	c := &Cache{Now: later}
	cfg, err := c.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Policy.ExemptUsers[0] = "mallory"
	again, err := c.Load(path)
	if err != nil || again.Policy.ExemptUsers[0] != "alice" {
		t.Fatalf("the kept config was changed through a caller: %v %v", again.Policy.ExemptUsers, err)
	}
}
