package pgstore

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"strings"
	"testing"

	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
)

// TestSQLTOTPRFC6238 checks otpgate.hotp against the test vectors of RFC
// 6238 appendix B: 8 digits, SHA1, SHA256 and SHA512 with their seeds,
// 30-second steps, up to the year 2603.
func TestSQLTOTPRFC6238(t *testing.T) {
	d := newDB(t)
	seeds := map[string]string{
		"SHA1":   "12345678901234567890",
		"SHA256": "12345678901234567890123456789012",
		"SHA512": "1234567890123456789012345678901234567890123456789012345678901234",
	}
	vectors := []struct {
		time               int64
		sha1, sha256, sha5 string
	}{
		{59, "94287082", "46119246", "90693936"},
		{1111111109, "07081804", "68084774", "25091201"},
		{1111111111, "14050471", "67062674", "99943326"},
		{1234567890, "89005924", "91819424", "93441116"},
		{2000000000, "69279037", "90698825", "38618901"},
		{20000000000, "65353130", "77737706", "47863826"},
	}
	for _, v := range vectors {
		for alg, want := range map[string]string{"SHA1": v.sha1, "SHA256": v.sha256, "SHA512": v.sha5} {
			var got string
			if err := d.admin.conn.QueryRow(context.Background(), `SELECT otpgate.hotp($1, $2, $3, 8)`,
				[]byte(seeds[alg]), v.time/30, alg).Scan(&got); err != nil {
				t.Fatal(err)
			}
			if got != want {
				t.Errorf("%s at %d: SQL gives %s, RFC 6238 says %s", alg, v.time, got, want)
			}
		}
	}
}

// TestSQLTOTPMatchesGo compares otpgate.hotp with internal/totp on random
// secrets, counters, algorithms and lengths.
func TestSQLTOTPMatchesGo(t *testing.T) {
	d := newDB(t)
	algs := []string{"SHA1", "SHA256", "SHA512"}
	for i := range 300 {
		secret := make([]byte, 16+mrand.IntN(49))
		rand.Read(secret)
		p := totp.Params{Algorithm: algs[i%3], Digits: []int{6, 8}[mrand.IntN(2)], Period: 30}
		counter := mrand.Uint64N(1 << 40)
		if i < 10 {
			counter = uint64(i) // the smallest counters, with leading zero bytes
		}
		want, err := totp.CodeAt(secret, counter, p)
		if err != nil {
			t.Fatal(err)
		}
		var got string
		if err := d.admin.conn.QueryRow(context.Background(), `SELECT otpgate.hotp($1, $2, $3, $4)`,
			secret, int64(counter), p.Algorithm, p.Digits).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("%s/%d secret %x counter %d: SQL %s, Go %s", p.Algorithm, p.Digits, secret, counter, got, want)
		}
	}
}

// TestSQLClassifyMatchesGo compares otpgate.classify with verify.Classify
// on inputs of every kind, for users with 6- and with 8-digit codes:
// what is a code, a backup code, a scratch code or malformed, and the
// form compared.
func TestSQLClassifyMatchesGo(t *testing.T) {
	d := newDB(t)
	inputs := []string{
		"123456", " 123456 ", "\t123456\n", "\u00a0123456\u3000", "12345678", "1234 5678", "1234-5678",
		"12345", "1234567", "123456789", "", " ", "abcdef", "１２３４５６",
		"ABCDE-12345", "abcde12345", "abcde 12345", "oilOI-LLLLL", "ABCDE-1234U", "ABCDE-12345-",
		"A-B-C-D-E-1-2-3-4-5", "ABCDE\t12345", " ABCDE-12345 ", "ÀBCDE-12345", strings.Repeat("-", 40) + "ABCDE12345",
		strings.Repeat(" ", 30) + "ABCDE12345", "1234567-8", strings.Repeat("-", 25) + "12345678",
		"12345678\u0085", "\u200a12345678", "12 34 56", "0000000000", "Ｏ12345678",
	}
	for _, digits := range []int{6, 8} {
		for _, in := range inputs {
			gk, gn := verify.Classify(in, digits)
			want := map[int]string{0: "malformed", 1: "totp", 2: "backup"}[gk]
			var kind string
			var norm *string
			if err := d.admin.conn.QueryRow(context.Background(), `SELECT kind, norm FROM otpgate.classify($1, $2)`,
				in, []int32{int32(digits)}).Scan(&kind, &norm); err != nil {
				t.Fatal(err)
			}
			if kind == "code" || kind == "scratch" {
				kind = "backup"
			}
			if kind != want || deref(norm) != gn {
				t.Errorf("digits %d, input %q: SQL %s %q, Go %s %q", digits, in, kind, deref(norm), want, gn)
			}
		}
	}
}
