package config

import (
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// racyWindow is how long after its last change a file's parse is not
// kept: file times have the kernel's coarse clock (a tick, a few
// milliseconds), so a file rewritten in place twice within one tick, to
// the same size, could keep its times. A parse made this long after the
// change cannot have missed a later one: that would change ctime.
const racyWindow = time.Second

// Cache is Load for a process that reads the same config on every
// request (the helper daemon). Every Load opens and fstat()s the file
// with the same checks as the package's Load, so a file replaced,
// chmod'ed, chown'ed or made a symbolic link is seen at once; only the
// read and the parse are skipped, when the file is the one parsed last
// time: the same device, inode, size, mtime and ctime (in nanoseconds),
// and changed at least racyWindow before that parse. Errors are never
// kept. The zero Cache is ready to use; it is safe for concurrent use.
type Cache struct {
	// Now is the clock compared with the file's ctime; nil means
	// time.Now.
	Now func() time.Time

	mu      sync.Mutex
	entries map[string]cacheEntry
}

type cacheEntry struct {
	key fileKey
	cfg Config
}

// fileKey is what identifies one version of a file.
type fileKey struct {
	dev, ino, size      uint64
	mtimeSec, mtimeNsec int64
	ctimeSec, ctimeNsec int64
}

func keyOf(st *unix.Stat_t) fileKey {
	return fileKey{
		dev: uint64(st.Dev), ino: uint64(st.Ino), size: uint64(st.Size),
		mtimeSec: int64(st.Mtim.Sec), mtimeNsec: int64(st.Mtim.Nsec),
		ctimeSec: int64(st.Ctim.Sec), ctimeNsec: int64(st.Ctim.Nsec),
	}
}

// Load is the package's Load, with the parse of an unchanged file kept.
func (c *Cache) Load(path string) (Config, error) {
	f, st, err := open(path)
	if err != nil {
		return Config{}, err
	}
	if f == nil {
		return Default(), nil
	}
	defer f.Close()
	key := keyOf(&st)
	c.mu.Lock()
	e, ok := c.entries[path]
	c.mu.Unlock()
	if ok && e.key == key {
		return e.cfg.clone(), nil
	}
	now := time.Now
	if c.Now != nil {
		now = c.Now
	}
	parsed := now()
	cfg, err := read(path, f)
	if err != nil {
		c.mu.Lock()
		delete(c.entries, path)
		c.mu.Unlock()
		return Config{}, err
	}
	c.mu.Lock()
	if c.entries == nil {
		c.entries = map[string]cacheEntry{}
	}
	if parsed.Sub(time.Unix(key.ctimeSec, key.ctimeNsec)) >= racyWindow {
		c.entries[path] = cacheEntry{key: key, cfg: cfg.clone()}
	} else {
		delete(c.entries, path)
	}
	c.mu.Unlock()
	return cfg, nil
}

// clone returns c with slices of its own, so that no caller can change
// what the cache hands the next one.
func (c Config) clone() Config {
	c.Policy.RequireGroups = slices.Clone(c.Policy.RequireGroups)
	c.Policy.ExemptGroups = slices.Clone(c.Policy.ExemptGroups)
	c.Policy.ExemptUsers = slices.Clone(c.Policy.ExemptUsers)
	return c
}

// Len returns how many parses c keeps.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
