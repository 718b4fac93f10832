package main

import (
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

// The code daemonload answers is well-formed and none of the user's codes
// within two steps of now, for every kind of enrollment.
func TestWrongCode(t *testing.T) {
	secret := []byte("12345678901234567890")
	for _, p := range []totp.Params{totp.Default, {Algorithm: "SHA256", Digits: 8, Period: 60}} {
		u := &user{name: "u", secret: secret, params: p}
		for i := 0; i < 200; i++ {
			now := time.Unix(int64(i)*int64(p.Period), 0)
			c := wrongCode(u, now)
			if len(c) != p.Digits {
				t.Fatalf("%+v: %q is not %d digits", p, c, p.Digits)
			}
			step := totp.Step(now, p.Period)
			for d := int64(-2); d <= 2; d++ {
				if right, _ := totp.CodeAt(secret, uint64(step+d), p); right == c {
					t.Fatalf("%+v at %v: %q is the code of step %+d", p, now, c, d)
				}
			}
		}
	}
}
