package gaimport

import (
	"errors"
	"os"
	"testing"

	"github.com/otpgate/otpgate/internal/nss"
)

// TestLookupNSS: an account found through getent, with its uid and home;
// a name NSS does not know is nss.ErrNotFound.
func TestLookupNSS(t *testing.T) {
	if _, err := os.Stat(nss.DefaultGetent); err != nil {
		t.Skip(err)
	}
	a, err := LookupNSS(nss.Default, "root")
	if err != nil || a.UID != 0 || a.Home != "/root" || a.DefaultPath() != "/root/"+FileName {
		t.Errorf("LookupNSS(root) = %+v, %v", a, err)
	}
	if _, err := LookupNSS(nss.Default, "otpgate-no-such-user"); !errors.Is(err, nss.ErrNotFound) {
		t.Errorf("unknown user: %v", err)
	}
}
