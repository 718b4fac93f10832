package totp

import (
	"testing"
	"time"
)

// RFC 6238 appendix B, with the seeds of the errata: 20 bytes for SHA1, 32
// for SHA256, 64 for SHA512.
var rfc6238 = []struct {
	t    int64
	code map[string]string
}{
	{59, map[string]string{"SHA1": "94287082", "SHA256": "46119246", "SHA512": "90693936"}},
	{1111111109, map[string]string{"SHA1": "07081804", "SHA256": "68084774", "SHA512": "25091201"}},
	{1111111111, map[string]string{"SHA1": "14050471", "SHA256": "67062674", "SHA512": "99943326"}},
	{1234567890, map[string]string{"SHA1": "89005924", "SHA256": "91819424", "SHA512": "93441116"}},
	{2000000000, map[string]string{"SHA1": "69279037", "SHA256": "90698825", "SHA512": "38618901"}},
	{20000000000, map[string]string{"SHA1": "65353130", "SHA256": "77737706", "SHA512": "47863826"}},
}

var rfcSeeds = map[string][]byte{
	"SHA1":   []byte("12345678901234567890"),
	"SHA256": []byte("12345678901234567890123456789012"),
	"SHA512": []byte("1234567890123456789012345678901234567890123456789012345678901234"),
}

func TestRFC6238(t *testing.T) {
	rows := 0
	for _, row := range rfc6238 {
		for alg, want := range row.code {
			p := Params{Algorithm: alg, Digits: 8, Period: 30}
			now := time.Unix(row.t, 0)
			got, err := CodeAt(rfcSeeds[alg], uint64(Step(now, 30)), p)
			if err != nil || got != want {
				t.Errorf("T=%d %s: CodeAt = %q, %v; want %q", row.t, alg, got, err, want)
			}
			// The verification path: window 0, nothing accepted yet.
			step, ok, _, err := Match(rfcSeeds[alg], want, now, 0, 0, p)
			if err != nil || !ok || step != row.t/30 {
				t.Errorf("T=%d %s: Match = %d, %v, %v; want step %d", row.t, alg, step, ok, err, row.t/30)
			}
			rows++
		}
	}
	if rows != 18 {
		t.Fatalf("checked %d rows, want 18", rows)
	}
}

// RFC 4226 appendix D: HOTP values for counters 0 to 9.
func TestRFC4226(t *testing.T) {
	want := []string{"755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"}
	for counter, w := range want {
		got, err := CodeAt([]byte("12345678901234567890"), uint64(counter), Default)
		if err != nil || got != w {
			t.Errorf("counter %d: %q, %v; want %q", counter, got, err, w)
		}
	}
}

func TestMatchWindowAndReplay(t *testing.T) {
	secret := rfcSeeds["SHA1"]
	base := time.Unix(30*1000, 0) // the first second of step 1000
	code := func(step int64) string {
		c, err := CodeAt(secret, uint64(step), Default)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	for _, tc := range []struct {
		name   string
		offset time.Duration // of the verifier's clock from the start of step 1000
		window int
		ok     bool
	}{
		{"same step, +0s", 0, 0, true},
		{"same step, +29s", 29 * time.Second, 0, true},
		{"next step, +30s, window 0", 30 * time.Second, 0, false},
		{"next step, +31s, window 0", 31 * time.Second, 0, false},
		{"previous step, -1s, window 0", -time.Second, 0, false},
		{"next step, +30s, window 1", 30 * time.Second, 1, true},
		{"+59s, window 1", 59 * time.Second, 1, true},
		{"+60s, window 1", 60 * time.Second, 1, false},
		{"-30s, window 1", -30 * time.Second, 1, true},
		{"-31s, window 1", -31 * time.Second, 1, false},
	} {
		_, ok, _, err := Match(secret, code(1000), base.Add(tc.offset), tc.window, 0, Default)
		if err != nil || ok != tc.ok {
			t.Errorf("%s: ok=%v err=%v, want ok=%v", tc.name, ok, err, tc.ok)
		}
	}
	// Replay: a step at or before the last accepted one never matches.
	_, ok, replayed, _ := Match(secret, code(1000), base, 1, 1000, Default)
	if ok || !replayed {
		t.Errorf("replay of the accepted step: ok=%v replayed=%v", ok, replayed)
	}
	_, ok, replayed, _ = Match(secret, code(999), base, 1, 1000, Default)
	if ok || !replayed {
		t.Errorf("older step after a newer one: ok=%v replayed=%v", ok, replayed)
	}
	if step, ok, _, _ := Match(secret, code(1001), base, 1, 1000, Default); !ok || step != 1001 {
		t.Errorf("newer step: ok=%v step=%d", ok, step)
	}
}

func TestParamsCheck(t *testing.T) {
	for _, p := range []Params{
		{"MD5", 6, 30}, {"sha1", 6, 30}, {"SHA1", 7, 30}, {"SHA1", 6, 5}, {"SHA1", 6, 301},
	} {
		if p.Check() == nil {
			t.Errorf("%+v accepted", p)
		}
		if _, _, _, err := Match(rfcSeeds["SHA1"], "123456", time.Now(), 1, 0, p); err == nil {
			t.Errorf("Match with %+v did not fail", p)
		}
	}
}

func TestGroupKey(t *testing.T) {
	for in, want := range map[string]string{
		"":         "",
		"ABC":      "ABC",
		"ABCD":     "ABCD",
		"ABCDEFGH": "ABCD EFGH",
		"ABCDEFG":  "ABCD EFG",
	} {
		if got := GroupKey(in); got != want {
			t.Errorf("GroupKey(%q) = %q, want %q", in, got, want)
		}
	}
}
