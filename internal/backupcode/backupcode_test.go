package backupcode

import (
	"strings"
	"testing"
)

func TestNewFormat(t *testing.T) {
	codes, err := New(10)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, c := range codes {
		if len(c) != 11 || c[5] != '-' {
			t.Errorf("%q is not XXXXX-XXXXX", c)
		}
		n, ok := Normalize(c)
		if !ok || n != strings.ReplaceAll(c, "-", "") {
			t.Errorf("Normalize(%q) = %q, %v", c, n, ok)
		}
		if seen[c] {
			t.Errorf("duplicate code %q", c)
		}
		seen[c] = true
	}
}

func TestNormalize(t *testing.T) {
	for in, want := range map[string]string{
		"ABCDE-12345":    "ABCDE12345",
		"abcde12345":     "ABCDE12345",
		" abcde 12345 ":  "ABCDE12345",
		"oilOL-00000":    "01101" + "00000",
		"ab-cd-e1-23-45": "ABCDE12345",
	} {
		if got, ok := Normalize(in); !ok || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
	for _, in := range []string{"", "ABCDE1234", "ABCDE123456", "ABCDU12345", "ABCDE-1234!", "ÄBCDE12345", strings.Repeat("-", 100)} {
		if got, ok := Normalize(in); ok {
			t.Errorf("Normalize(%q) = %q, accepted", in, got)
		}
	}
}

func TestHashFind(t *testing.T) {
	var hashes []string
	for _, c := range []string{"AAAAA11111", "BBBBB22222", "CCCCC33333"} {
		h, err := Hash(c)
		if err != nil {
			t.Fatal(err)
		}
		hashes = append(hashes, h)
	}
	if i, err := Find("BBBBB22222", hashes); err != nil || i != 1 {
		t.Errorf("Find = %d, %v; want 1", i, err)
	}
	if i, err := Find("DDDDD44444", hashes); err != nil || i != -1 {
		t.Errorf("Find of a wrong code = %d, %v; want -1", i, err)
	}
	// A hash asking for other parameters (say, 4 GiB of memory) is refused
	// before any work is done.
	bad := strings.Replace(hashes[0], "m=8192", "m=4194304", 1)
	if _, err := Find("AAAAA11111", []string{bad}); err == nil {
		t.Error("a hash with foreign parameters was used")
	}
	for _, h := range []string{"", "$argon2i$v=19$m=8192,t=2,p=1$x$y", hashes[0] + "x", hashes[0][:len(hashes[0])-4]} {
		if CheckHash(h) == nil {
			t.Errorf("CheckHash(%q) accepted", h)
		}
	}
}

// BenchmarkCheck is the cost of one stored hash in a backup-code login.
func BenchmarkCheck(b *testing.B) {
	h, err := Hash("ABCDE12345")
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Find("ABCDE12345", []string{h})
	}
}

// TestHashSetOneHash: a set made at enrollment shares one salt, so a
// backup-code attempt costs one argon2id hash however many codes are
// left; files written before that (a salt per code) still work.
func TestHashSetOneHash(t *testing.T) {
	codes, err := New(10)
	if err != nil {
		t.Fatal(err)
	}
	hashes, err := HashSet(codes)
	if err != nil {
		t.Fatal(err)
	}
	if n := Hashes(hashes); n != 1 {
		t.Fatalf("a set of 10 costs %d hashes per attempt, want 1", n)
	}
	for i, c := range codes {
		norm, _ := Normalize(c)
		if got, err := Find(norm, hashes); err != nil || got != i {
			t.Errorf("Find(code %d) = %d, %v", i, got, err)
		}
	}
	if got, _ := Find("ZZZZZZZZZZ", hashes); got != -1 {
		t.Errorf("wrong code found at %d", got)
	}
	if _, err := HashSet([]string{"not a code"}); err == nil {
		t.Error("HashSet hashed something that is not a backup code")
	}
	// The old form: a salt per code, one hash each.
	var old []string
	for _, c := range codes[:3] {
		norm, _ := Normalize(c)
		h, err := Hash(norm)
		if err != nil {
			t.Fatal(err)
		}
		old = append(old, h)
	}
	if n := Hashes(old); n != 3 {
		t.Fatalf("old form: %d hashes, want 3", n)
	}
	norm, _ := Normalize(codes[2])
	if got, err := Find(norm, old); err != nil || got != 2 {
		t.Errorf("old form: Find = %d, %v; want 2", got, err)
	}
}

// BenchmarkFindSet is one backup-code attempt against a full set of ten
// codes: one hash, about the cost of BenchmarkCheck.
func BenchmarkFindSet(b *testing.B) {
	codes, _ := New(10)
	hashes, err := HashSet(codes)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		Find("ABCDE12345", hashes)
	}
}
