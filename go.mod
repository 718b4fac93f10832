module github.com/otpgate/otpgate

go 1.26.8

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/boombuler/barcode v1.0.1-0.20190219062509-6c824513bacc
	github.com/pquerna/otp v1.5.0
	github.com/rogpeppe/go-internal v1.16.0
	golang.org/x/crypto v0.59.0
	golang.org/x/sys v0.50.0
)

require golang.org/x/tools v0.26.0 // indirect

// Test-only: internal/pamtest drives the real libpam stack (cgo, libpam0g-dev).
require github.com/msteinert/pam/v2 v2.1.0
