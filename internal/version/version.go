// Package version is otpgate's version, as the build set it.
//
// make sets Version with -ldflags -X from its VERSION variable: by
// default `git describe --tags --always --dirty`, and a package build
// passes the package's version. A binary built otherwise (go build, go
// install) reports what the go command recorded: the module version for
// go install ...@vX.Y.Z, else the commit, else "devel".
package version

import (
	"runtime/debug"
	"strings"
)

// Version is set at build time:
// -ldflags '-X github.com/otpgate/otpgate/internal/version.Version=1.2.3'.
var Version string

// String returns the version: Version when the build set it, else what
// the go command recorded in the binary.
func String() string {
	if Version != "" {
		return Version
	}
	return fromBuildInfo(debug.ReadBuildInfo())
}

func fromBuildInfo(bi *debug.BuildInfo, ok bool) string {
	if !ok {
		return "devel"
	}
	if v := bi.Main.Version; v != "" && v != "(devel)" {
		return strings.TrimPrefix(v, "v")
	}
	var rev, modified string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value
		}
	}
	if rev == "" {
		return "devel"
	}
	if len(rev) > 7 {
		rev = rev[:7]
	}
	if modified == "true" {
		rev += "-dirty"
	}
	return "devel-" + rev
}
