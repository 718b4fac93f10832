package backupcode

import (
	"bytes"
	"crypto/subtle"
	"testing"
)

// TestPartsRoundTrip: SplitHash and JoinHash give back the same string for
// both kinds, and Key of the right code under the salt is the stored key
// (of a wrong code, not).
func TestPartsRoundTrip(t *testing.T) {
	codes, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	hs, err := HashSet(codes)
	if err != nil {
		t.Fatal(err)
	}
	ss, err := HashScratchSet([]string{"12345678"})
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range append(hs, ss...) {
		p, err := SplitHash(h)
		if err != nil {
			t.Fatal(err)
		}
		if want := Kind(0); i == 2 {
			want = KindScratch
			if p.Kind != want {
				t.Errorf("hash %d: kind %v, want %v", i, p.Kind, want)
			}
		} else if p.Kind != want {
			t.Errorf("hash %d: kind %v, want %v", i, p.Kind, want)
		}
		back, err := JoinHash(p)
		if err != nil || back != h {
			t.Errorf("JoinHash(SplitHash(%q)) = %q, %v", h, back, err)
		}
		code := "12345678"
		if i < 2 {
			code, _ = Normalize(codes[i])
		}
		k, err := Key(code, p.Params, p.Salt)
		if err != nil || subtle.ConstantTimeCompare(k, p.Key) != 1 {
			t.Errorf("Key of the right code under hash %d's salt differs from its key (%v)", i, err)
		}
		k, _ = Key("0000000000", p.Params, p.Salt)
		if bytes.Equal(k, p.Key) {
			t.Errorf("Key of a wrong code matched hash %d", i)
		}
	}
	if _, err := SplitHash("$argon2id$v=19$m=65536,t=2,p=1$AAAA$AAAA"); err == nil {
		t.Error("SplitHash took other parameters")
	}
	if _, err := Key("0000000000", "m=65536,t=3,p=4", make([]byte, 16)); err == nil {
		t.Error("Key took other parameters: a stored row could ask for gigabytes")
	}
	if _, err := JoinHash(Parts{Params: Params(), Salt: make([]byte, 3), Key: make([]byte, 32)}); err == nil {
		t.Error("JoinHash took a short salt")
	}
}
