// Package pamtest holds the tests that drive pam_otpgate.so through the
// real libpam stack: they build the module and otpgate-helper, write PAM
// service files into a temp directory, and authenticate with
// github.com/msteinert/pam/v2 (pam_start_confdir) and with pamtester.
//
// They need root (the module refuses a helper that is not root-owned), a
// C compiler and libpam0g-dev; without them every test skips and says why.
//
// BuildLauncher, its one non-test function, builds the setuid launcher
// for the tests of other packages (internal/e2e, sshcheck) too.
package pamtest
