package passwd

import (
	"os"
	"path/filepath"
	"testing"
)

const sample = "root:x:0:0:root:/root:/bin/bash\n" +
	"+nis:x:1000:1000::/:/bin/sh\n" +
	"short:x:1000\n" +
	"broken\n" +
	"alice:x:1000:1000:Alice:/home/alice:/usr/bin/zsh\n" +
	"alias:x:1000:1000::/home/alias:/bin/sh\n" +
	"nologin:x:1001:1001::/:/usr/sbin/nologin\n" +
	"noshell:x:1002:1002::/:\n"

func write(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(p, []byte(sample), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLookupUID(t *testing.T) {
	p := write(t)
	for uid, want := range map[int]Entry{
		0:    {"root", "0", "0", "/root", "/bin/bash"},
		1000: {"alice", "1000", "1000", "/home/alice", "/usr/bin/zsh"}, // not the NIS entry nor the short line; the first match
		1002: {"noshell", "1002", "1002", "/", ""},
	} {
		got, err := LookupUID(p, uid)
		if err != nil || got != want {
			t.Errorf("LookupUID(%d) = %+v, %v; want %+v", uid, got, err, want)
		}
	}
	if _, err := LookupUID(p, 4242); err == nil {
		t.Error("an unknown uid was found")
	}
	if _, err := LookupUID(filepath.Join(t.TempDir(), "none"), 0); err == nil {
		t.Error("a missing file gave an account")
	}
}

func TestReadAll(t *testing.T) {
	all, err := ReadAll(write(t))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range all {
		names = append(names, e.Name)
	}
	if got := len(names); got != 5 {
		t.Fatalf("entries %v, want root alice alias nologin noshell", names)
	}
	for _, e := range all {
		if want := e.Name == "root" || e.Name == "alice" || e.Name == "alias"; e.CanLogIn() != want {
			t.Errorf("%s: CanLogIn = %v", e.Name, e.CanLogIn())
		}
	}
}
