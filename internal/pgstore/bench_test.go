package pgstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/internal/verify"
)

// BenchmarkVerify measures one attempt through one host connection: CALL
// otpgate.verify with its two durable commits, a wrong TOTP code checked
// against the 3 steps of the default window (the work of a right one).
// The users' failure counts are reset, untimed, before any could lock.
func BenchmarkVerify(b *testing.B) {
	d := newDB(b)
	ctx := context.Background()
	if err := d.admin.SetPolicy(ctx, Policy{Window: 1, MaxFailures: 100, LockDuration: time.Minute}); err != nil {
		b.Fatal(err)
	}
	const users = 50
	for i := range users {
		enroll(b, d, fmt.Sprintf("u%d", i), "phone", testSecret, totp.Default)
	}
	h := d.host(b)
	wrong := "000000"
	for s := int64(-3); s <= 3; s++ {
		if codeNow(b, testSecret, totp.Default, s) == wrong {
			wrong = "111111"
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if i > 0 && i%(users*90) == 0 {
			b.StopTimer()
			if _, err := d.admin.conn.Exec(ctx, `UPDATE otpgate.user_state SET failures = 0`); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if r := h.Verify(ctx, fmt.Sprintf("u%d", i%users), wrong, "bench", ""); r.Outcome != verify.Denied {
			b.Fatalf("%+v", r)
		}
	}
}
