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

// TestScratch: google-authenticator scratch codes, carried over by an
// import, are hashed marked with their kind, each found once, and never
// compared with a 10-character code's hash (nor the reverse).
func TestScratch(t *testing.T) {
	for in, want := range map[string]string{"12345678": "12345678", " 1234-5678 ": "12345678"} {
		if got, ok := NormalizeScratch(in); !ok || got != want {
			t.Errorf("NormalizeScratch(%q) = %q, %v", in, got, ok)
		}
	}
	for _, in := range []string{"", "1234567", "123456789", "1234567a", "ABCDE12345"} {
		if got, ok := NormalizeScratch(in); ok {
			t.Errorf("NormalizeScratch(%q) = %q, accepted", in, got)
		}
	}
	scratch := []string{"63567295", "64420013", "80905551"}
	hashes, err := HashScratchSet(scratch)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hashes {
		if !strings.Contains(h, "$m=8192,t=2,p=1,kind=scratch$") || CheckHash(h) != nil {
			t.Errorf("scratch hash %q is not marked or not read", h)
		}
	}
	if _, err := HashScratchSet([]string{"ABCDE12345"}); err == nil {
		t.Error("HashScratchSet hashed a 10-character code")
	}
	codes, _ := New(2)
	coded, err := HashSet(codes)
	if err != nil {
		t.Fatal(err)
	}
	mixed := append(append([]string{}, coded...), hashes...)
	if n := Hashes(mixed); n != 2 {
		t.Errorf("a set of codes and a set of scratch codes: %d salts, want 2", n)
	}
	for i, c := range scratch {
		if got, err := Find(c, mixed); err != nil || got != len(coded)+i {
			t.Errorf("Find(scratch %d) = %d, %v", i, got, err)
		}
	}
	norm, _ := Normalize(codes[1])
	if got, err := Find(norm, mixed); err != nil || got != 1 {
		t.Errorf("Find(code 1) among scratch hashes = %d, %v", got, err)
	}
	if got, _ := Find("99999999", mixed); got != -1 {
		t.Errorf("wrong scratch code found at %d", got)
	}
	// The same 8 digits hashed as a plain code (unmarked) are not a
	// scratch hash: the mark, not the input, says what a hash can match.
	unmarked := strings.Replace(hashes[0], ",kind=scratch", "", 1)
	if got, _ := Find(scratch[0], []string{unmarked}); got != -1 {
		t.Error("a scratch code matched an unmarked hash")
	}
	if CheckHash(strings.Replace(hashes[0], "kind=scratch", "kind=other", 1)) == nil {
		t.Error("an unknown kind was accepted")
	}
}

// TestNewSet: n codes, each found among the set's hashes, all under one
// salt.
func TestNewSet(t *testing.T) {
	codes, hashes, err := NewSet(3)
	if err != nil || len(codes) != 3 || len(hashes) != 3 {
		t.Fatalf("NewSet(3) = %d codes, %d hashes, %v", len(codes), len(hashes), err)
	}
	for i, c := range codes {
		n, _ := Normalize(c)
		if j, err := Find(n, hashes); err != nil || j != i {
			t.Errorf("code %d found at %d, %v", i, j, err)
		}
	}
	if Hashes(hashes) != 1 {
		t.Errorf("the set needs %d hashes per attempt, want 1 (one salt)", Hashes(hashes))
	}
}
