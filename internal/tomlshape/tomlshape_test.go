package tomlshape

import (
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
)

func TestCheck(t *testing.T) {
	hashes := `backup_codes = ["` + strings.Repeat("$argon2id$v=19$m=8192,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g", 1) + `"` +
		strings.Repeat(`, "$argon2id$v=19$m=8192,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"`, 49) + "]\n"
	for _, ok := range []string{
		"version = 1\nsecret = \"ABC\"\n" + hashes,
		"store = \"/var/lib/otpgate\"\n[lockout]\nmax_failures = 5\nlock_duration = \"15m\"\n",
		"issuer = \"a.b.c.d.e.f.g.h.i.j\"\n", // dots in a value are fine
	} {
		if err := Check([]byte(ok)); err != nil {
			t.Errorf("refused %q: %v", ok[:min(len(ok), 60)], err)
		}
	}
	for name, bad := range map[string]string{
		"dotted key":    strings.Repeat("x.", 2000) + "x = 1\n",
		"inline tables": "x = " + strings.Repeat("{a=", 2000) + "\n",
		"nested arrays": "x = " + strings.Repeat("[", 2000) + "\n",
		"long line":     "x = \"" + strings.Repeat("a", MaxLine) + "\"\n",
	} {
		if err := Check([]byte(bad)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestBoundsKeepParsingFast parses the worst shapes Check lets through.
func TestBoundsKeepParsingFast(t *testing.T) {
	for name, in := range map[string]string{
		"dots at the bound":   strings.Repeat(strings.Repeat("x.", MaxKeyDots)+"x = 1\n", 64),
		"braces at the bound": strings.Repeat("x = {a={a={a={a=1}}}}\n", MaxBraces/4),
	} {
		if err := Check([]byte(in)); err != nil {
			t.Fatalf("%s: refused: %v", name, err)
		}
		start := time.Now()
		var v map[string]any
		toml.Decode(in, &v)
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: parsing took %v", name, d)
		}
	}
}
