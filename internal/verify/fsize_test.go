package verify

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/keystore"
)

// childEnv makes the test binary run one attempt under a file-size limit
// (see TestMain) instead of the tests.
const childEnv = "OTPGATE_VERIFY_FSIZE_CHILD"

func TestMain(m *testing.M) {
	if arg := os.Getenv(childEnv); arg != "" {
		os.Exit(fsizeChild(arg))
	}
	os.Exit(m.Run())
}

// fsizeChild runs one attempt, "store|limit|unix time|code", with
// RLIMIT_FSIZE at limit and SIGXFSZ ignored (a write over the limit then
// fails with EFBIG, as it does in a helper whose caller set the limit), and
// prints the outcome.
func fsizeChild(arg string) int {
	p := strings.Split(arg, "|")
	limit, _ := strconv.ParseUint(p[1], 10, 64)
	sec, _ := strconv.ParseInt(p[2], 10, 64)
	signal.Ignore(syscall.SIGXFSZ)
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		fmt.Println("setrlimit:", err)
		return 2
	}
	cfg := config.Default()
	cfg.Store = p[0]
	v := &Verifier{Store: keystore.New(cfg.Store), Config: cfg, Now: func() time.Time { return time.Unix(sec, 0) }}
	fmt.Println(v.Verify(Request{User: "alice", Code: p[3], Service: "test"}).Outcome)
	return 0
}

// TestFileSizeLimitNeverLiftsLockout is finding 1 of the attack review:
// a caller's RLIMIT_FSIZE let the failure count be written and the lock
// (a second, larger write) fail, so guessing never locked the account and
// a right code was then accepted. Now each attempt is one write of a fixed
// size: under every limit from 0 to 4 KiB (and either side of
// keystore.StateFileSize), the attacker gets at most max_failures
// informative denials, each of them counted, and a right code after
// twelve wrong ones is never accepted.
func TestFileSizeLimitNeverLiftsLockout(t *testing.T) {
	const size = keystore.StateFileSize
	for _, limit := range []uint64{0, 1, 64, 100, 130, 200, 256, 300, 400, 511, 512, 600, size - 1, size, size + 1, 2048, 4096} {
		t.Run(strconv.FormatUint(limit, 10), func(t *testing.T) {
			f := newFixture(t, nil)
			max := f.v.Config.MaxFailures
			attempt := func(code string) string {
				arg := fmt.Sprintf("%s|%d|%d|%s", f.v.Store.Dir(), limit, f.now.Unix(), code)
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				// GORACE: a race-enabled child would sleep 1 s at exit.
				cmd.Env = append(os.Environ(), childEnv+"="+arg, "GORACE=atexit_sleep_ms=0")
				out, err := cmd.Output()
				if err != nil {
					t.Fatalf("attempt under RLIMIT_FSIZE=%d: %v %s", limit, err, out)
				}
				return strings.TrimSpace(string(out))
			}
			denied := 0
			for i := 0; i < 12; i++ {
				switch o := attempt("000000"); o {
				case "denied":
					denied++
				case "locked", "error":
				default:
					t.Fatalf("wrong code %d: %s", i+1, o)
				}
			}
			if denied > max {
				t.Fatalf("%d wrong codes were answered as such, over max_failures %d", denied, max)
			}
			st, err := f.v.Store.ReadState("alice")
			if err != nil {
				t.Fatal(err)
			}
			if st.Failures != denied {
				t.Errorf("%d denials answered, %d counted", denied, st.Failures)
			}
			if denied == max && st.LockedUntil.IsZero() {
				t.Errorf("%d failures counted and no lock", denied)
			}
			if o := attempt(f.code(startStep)); o == "accepted" {
				t.Errorf("the right code was accepted after 12 wrong ones (%d counted)", st.Failures)
			}
		})
	}
}
