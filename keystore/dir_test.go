package keystore

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// storeOps are all the operations that walk the store directory.
func storeOps(s *Store) []op {
	return []op{
		{"ReadUser", func() error { _, err := s.ReadUser("alice"); return err }},
		{"ReadState", func() error { _, err := s.ReadState("alice"); return err }},
		{"Users", func() error { _, err := s.Users(); return err }},
		{"Lock", func() error {
			l, err := s.Lock("alice", 100*time.Millisecond)
			if err == nil {
				l.Unlock()
			}
			return err
		}},
	}
}

// wantAllRefused runs every store operation and wants each refused with
// an error naming path (and not taken for a missing file).
func wantAllRefused(t *testing.T, s *Store, path string) {
	t.Helper()
	for _, o := range storeOps(s) {
		err := within(t, hangLimit, o.name, o.run)
		wantRefused(t, o.name, err, path)
		if errors.Is(err, ErrNotEnrolled) || errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s: %v: taken for a missing file", o.name, err)
		}
	}
}

func TestStoreDirWritableByOthers(t *testing.T) {
	for _, mode := range []fs.FileMode{0o770, 0o720, 0o702, 0o777, fs.ModeSticky | 0o777} {
		t.Run(mode.String(), func(t *testing.T) {
			s := enrolledStore(t)
			chmod(t, s.Dir(), mode)
			wantAllRefused(t, s, s.Dir())
		})
	}
}

func TestSubdirWritableByOthers(t *testing.T) {
	for _, sub := range []string{"users", "state", "locks"} {
		for _, mode := range []fs.FileMode{0o770, 0o707} {
			t.Run(sub+"/"+mode.String(), func(t *testing.T) {
				s := enrolledStore(t)
				path := filepath.Join(s.Dir(), sub)
				chmod(t, path, mode)
				wantSubRefused(t, s, sub, path)
			})
		}
	}
}

// wantSubRefused checks the operations that use subdirectory sub.
func wantSubRefused(t *testing.T, s *Store, sub, path string) {
	t.Helper()
	var ops []op
	switch sub {
	case "users":
		held, err := s.Lock("alice", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Unlock()
		ops = append(opsOn(s, "user", held, true),
			op{"Users", func() error { _, err := s.Users(); return err }},
			op{"RemoveUser", held.RemoveUser})
	case "state":
		held, err := s.Lock("alice", time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer held.Unlock()
		ops = opsOn(s, "state", held, true)
	case "locks":
		ops = opsOn(s, "lock", nil, false)
	}
	for _, o := range ops {
		err := within(t, hangLimit, o.name, o.run)
		wantRefused(t, o.name, err, path)
		if errors.Is(err, ErrNotEnrolled) {
			t.Errorf("%s: %v: taken for a missing file", o.name, err)
		}
	}
}

func TestStoreDirSymlink(t *testing.T) {
	realStore := enrolledStore(t)
	link := filepath.Join(t.TempDir(), "store")
	if err := os.Symlink(realStore.Dir(), link); err != nil {
		t.Fatal(err)
	}
	before := map[string]snapshot{
		realStore.UserPath("alice"):  snap(t, realStore.UserPath("alice")),
		realStore.StatePath("alice"): snap(t, realStore.StatePath("alice")),
	}
	wantAllRefused(t, New(link), link)
	wantSaysLink(t, storeOps(New(link)))
	checkUnchanged(t, before)
}

// A symbolic link higher up is refused too: the walk from / never
// follows one.
func TestParentSymlink(t *testing.T) {
	realDir := t.TempDir()
	s := New(filepath.Join(realDir, "store"))
	l, err := s.Lock("alice", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.WriteUser(testUser()); err != nil {
		t.Fatal(err)
	}
	l.Unlock()
	link := filepath.Join(t.TempDir(), "link")
	if err := os.Symlink(realDir, link); err != nil {
		t.Fatal(err)
	}
	wantAllRefused(t, New(filepath.Join(link, "store")), link)
	wantSaysLink(t, storeOps(New(filepath.Join(link, "store"))))
}

// wantSaysLink wants every op's error to say it met a symbolic link (and
// not, say, "not a directory; remove it").
func wantSaysLink(t *testing.T, ops []op) {
	t.Helper()
	for _, o := range ops {
		if err := o.run(); err == nil || !strings.Contains(err.Error(), "symbolic link") {
			t.Errorf("%s: error %v does not say it is a symbolic link", o.name, err)
		}
	}
}

func TestSubdirSymlink(t *testing.T) {
	for _, sub := range []string{"users", "state", "locks"} {
		t.Run(sub, func(t *testing.T) {
			s := enrolledStore(t)
			path := filepath.Join(s.Dir(), sub)
			// The real directory moves outside the store; a link takes
			// its place. Followed, it would be accepted.
			outside := filepath.Join(t.TempDir(), sub)
			if err := os.Rename(path, outside); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, path); err != nil {
				t.Fatal(err)
			}
			before := map[string]snapshot{outside: snap(t, outside)}
			for _, name := range []string{"alice.toml", "alice.lock"} {
				if p := filepath.Join(outside, name); snap(t, p).exists {
					before[p] = snap(t, p)
				}
			}
			wantSubRefused(t, s, sub, path)
			switch sub {
			case "users":
				wantSaysLink(t, storeOps(s)[:1])
			case "state":
				wantSaysLink(t, storeOps(s)[1:2])
			case "locks":
				wantSaysLink(t, storeOps(s)[3:])
			}
			checkUnchanged(t, before)
		})
	}
}

// A file where a directory belongs is refused, not taken for "missing".
func TestFileInPlaceOfDir(t *testing.T) {
	t.Run("store", func(t *testing.T) {
		s := newStore(t)
		if err := os.WriteFile(s.Dir(), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
		wantAllRefused(t, s, s.Dir())
	})
	for _, sub := range []string{"users", "state", "locks"} {
		t.Run(sub, func(t *testing.T) {
			s := enrolledStore(t)
			path := filepath.Join(s.Dir(), sub)
			if err := os.RemoveAll(path); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
				t.Fatal(err)
			}
			wantSubRefused(t, s, sub, path)
		})
	}
}

func TestStorePathNotClean(t *testing.T) {
	base := t.TempDir()
	for _, dir := range []string{
		"",
		"store",
		"relative/store",
		"./store",
		base + "/store/",
		base + "/./store",
		base + "/x/../store",
		base + "//store",
		"/" + base + "/store",
	} {
		t.Run(dir, func(t *testing.T) {
			s := New(dir)
			for _, o := range storeOps(s) {
				err := within(t, hangLimit, o.name, o.run)
				if err == nil {
					t.Errorf("%s with store %q succeeded", o.name, dir)
				} else if errors.Is(err, ErrNotEnrolled) {
					t.Errorf("%s with store %q: taken for a missing file", o.name, dir)
				} else if dir != "" && !strings.Contains(err.Error(), dir) {
					t.Errorf("%s: error %q does not name %q", o.name, err, dir)
				}
			}
			if dir != "" && !filepath.IsAbs(dir) {
				if _, err := os.Lstat(dir); err == nil {
					t.Errorf("a store was made at the relative path %s", dir)
					os.RemoveAll(dir)
				}
			}
		})
	}
	if ents, _ := os.ReadDir(base); len(ents) != 0 {
		t.Errorf("something was created in %s: %v", base, ents)
	}
}

func TestParentWritableByOthers(t *testing.T) {
	for _, mode := range []fs.FileMode{0o777, 0o775, 0o757} {
		t.Run(mode.String(), func(t *testing.T) {
			parent := filepath.Join(t.TempDir(), "parent")
			if err := os.Mkdir(parent, 0o700); err != nil {
				t.Fatal(err)
			}
			s := New(filepath.Join(parent, "store"))
			l, err := s.Lock("alice", time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if err := l.WriteUser(testUser()); err != nil {
				t.Fatal(err)
			}
			l.Unlock()
			chmod(t, parent, mode)
			wantAllRefused(t, s, parent)
		})
	}
}

// A sticky world-writable parent is accepted only when root owns it, as
// for /tmp (which every test store here sits under).
func TestStickyParent(t *testing.T) {
	parent := filepath.Join(t.TempDir(), "parent")
	if err := os.Mkdir(parent, 0o700); err != nil {
		t.Fatal(err)
	}
	chmod(t, parent, fs.ModeSticky|0o777)
	s := New(filepath.Join(parent, "store"))
	l, err := s.Lock("alice", time.Second)
	if os.Geteuid() == 0 {
		if err != nil {
			t.Fatalf("Lock under a root-owned sticky 1777 parent: %v", err)
		}
		l.Unlock()
		if err := os.Lchown(parent, foreignUID, foreignUID); err != nil {
			t.Fatal(err)
		}
		wantAllRefused(t, s, parent)
		return
	}
	// Not root: the parent is ours, not root's.
	wantRefused(t, "Lock under a user-owned sticky 1777 parent", err, parent)
	if err == nil {
		l.Unlock()
	}
}

func TestForeignOwner(t *testing.T) {
	needRoot(t)
	t.Run("store", func(t *testing.T) {
		s := enrolledStore(t)
		if err := os.Lchown(s.Dir(), foreignUID, foreignUID); err != nil {
			t.Fatal(err)
		}
		wantAllRefused(t, s, s.Dir())
	})
	t.Run("parent", func(t *testing.T) {
		s := enrolledStore(t)
		parent := filepath.Dir(s.Dir())
		if err := os.Lchown(parent, foreignUID, foreignUID); err != nil {
			t.Fatal(err)
		}
		wantAllRefused(t, s, parent)
	})
	for _, sub := range []string{"users", "state", "locks"} {
		t.Run(sub, func(t *testing.T) {
			s := enrolledStore(t)
			path := filepath.Join(s.Dir(), sub)
			if err := os.Lchown(path, foreignUID, foreignUID); err != nil {
				t.Fatal(err)
			}
			wantSubRefused(t, s, sub, path)
		})
	}
}

// The store may be readable by others (0755); only writability matters.
func TestStoreDirReadableByOthers(t *testing.T) {
	s := enrolledStore(t)
	chmod(t, s.Dir(), 0o755)
	if _, err := s.ReadUser("alice"); err != nil {
		t.Errorf("ReadUser in a 0755 store: %v", err)
	}
}
