package helper

import (
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/protocol"
)

// TestProfileRightCode runs OTPGATE_PROFILE_N trusted-mode
// authentications with a right code through Run over a socketpair, as the
// daemon serves a connection, for go test -cpuprofile.
func TestProfileRightCode(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("OTPGATE_PROFILE_N"))
	if n == 0 {
		t.Skip("OTPGATE_PROFILE_N unset")
	}
	f := newFixture(t, "")
	secret, _ := f.enroll(t, "alice")
	o := Options{Caller: 0, NSS: fakeNSS(t, f.dir)}
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "alice", Service: "test",
		Args: []string{"config=" + f.config}}
	start := time.Now()
	for i := 0; i < n; i++ {
		f.now = f.now.Add(30 * time.Second)
		now := f.now
		o.Now = func() time.Time { return now }
		v, _ := f.run(t, o, req, &script{answers: []string{f.code(t, secret, 0)}})
		if v != protocol.ResultSuccess {
			t.Fatalf("attempt %d: %s", i, v)
		}
	}
	t.Logf("%d authentications, %v each", n, time.Since(start)/time.Duration(n))
}
