package config

import (
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/totp"
)

// FuzzParseConfig: Parse never panics; a config it accepts is within the
// documented limits; an error always names the file.
func FuzzParseConfig(f *testing.F) {
	for _, seed := range []string{
		"",
		"issuer = \"web-01\"\nalgorithm = \"SHA1\"\ndigits = 6\nperiod = 30\nwindow = 1\nstore = \"/var/lib/otpgate\"\n\n[lockout]\nmax_failures = 5\nlock_duration = \"15m\"\n\n[backup_codes]\ncount = 10\n\n[enroll]\nfirst_login = false\n",
		"algorithm = \"SHA512\"\ndigits = 8\nperiod = 300\nwindow = 10\n[lockout]\nmax_failures = 100\nlock_duration = \"168h\"\n[backup_codes]\ncount = 50\n",
		"lockout = { max_failures = 1, lock_duration = \"1s\" }\n",
		"lockout.max_failures = 3\nbackup_codes.count = 0\n",
		"[lockout]\nlock_duration = \"1h30m0.5s\"\n",
		"[lockout]\nlock_duration = \"-1ns\"\n",
		"[lockout]\nlock_duration = \"9223372036854775807ns\"\n",
		"window = -9223372036854775808\n",
		"digits = \"six\"\n",
		"[foo]\nbar = 1\n",
		"[[lockout]]\n",
		"issuer = \"\"\"\nweb\n01\"\"\"\n",
		"store = \"/\"\n",
		"\x00\xff ] [ garbage",
		"[lockout\nmax_failures = 3\n",
		"a.b.c.d = 1\n",
		"[\"lockout\"]\n'max_failures' = 3\n",
		"[policy]\nrequire_groups = [\"staff\"]\nexempt_groups = [\"svc\"]\nexempt_users = [\"backup\"]\n[enroll]\ndeadline = 2027-01-31\n",
		"[enroll]\ndeadline = 2027-01-31T00:00:00Z\n",
		"[enroll]\ndeadline = 0000-01-01\n",
		"[policy]\nexempt_users = [\"-s\", \"0\", \"a b\"]\n",
	} {
		f.Add([]byte(seed))
	}
	const name = "/etc/otpgate/fuzz.toml"
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(name, data)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "config: "+name) {
				t.Fatalf("error %q does not start with the file name", err)
			}
			if !reflect.DeepEqual(c, Config{}) {
				t.Fatalf("Parse returned %+v with an error", c)
			}
			return
		}
		if err := c.Params.Check(); err != nil {
			t.Fatalf("accepted %+v: %v", c.Params, err)
		}
		if c.Params.Period < totp.MinPeriod || c.Params.Period > totp.MaxPeriod {
			t.Fatalf("period %d accepted", c.Params.Period)
		}
		if c.Window < 0 || c.Window > MaxWindow {
			t.Fatalf("window %d accepted", c.Window)
		}
		if c.MaxFailures < 1 || c.MaxFailures > MaxMaxFailures {
			t.Fatalf("max_failures %d accepted", c.MaxFailures)
		}
		if c.LockDuration < time.Second || c.LockDuration > 7*24*time.Hour {
			t.Fatalf("lock_duration %v accepted", c.LockDuration)
		}
		if c.BackupCodes < 0 || c.BackupCodes > MaxBackupCodes {
			t.Fatalf("backup_codes.count %d accepted", c.BackupCodes)
		}
		if !filepath.IsAbs(c.Store) || filepath.Clean(c.Store) != c.Store {
			t.Fatalf("store %q accepted", c.Store)
		}
		if c.Issuer == "" || len(c.Issuer) > 64 || strings.ContainsAny(c.Issuer, ":\r\n") {
			t.Fatalf("issuer %q accepted", c.Issuer)
		}
		for _, l := range [][]string{c.Policy.RequireGroups, c.Policy.ExemptGroups, c.Policy.ExemptUsers} {
			if len(l) > MaxNames {
				t.Fatalf("%d names accepted", len(l))
			}
			for _, n := range l {
				if why := checkName(n); why != "" {
					t.Fatalf("policy name %q accepted: %s", n, why)
				}
			}
		}
	})
}
