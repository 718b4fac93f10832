package version

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	vcs := func(rev, modified string) []debug.BuildSetting {
		return []debug.BuildSetting{{Key: "vcs.revision", Value: rev}, {Key: "vcs.modified", Value: modified}}
	}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ok   bool
		want string
	}{
		{"no build info", nil, false, "devel"},
		{"go install module@version", &debug.BuildInfo{Main: debug.Module{Version: "v1.2.3"}}, true, "1.2.3"},
		{"go build, no vcs", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}}, true, "devel"},
		{"go build in a clean tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("08bfb9a1c2d3", "false")}, true, "devel-08bfb9a"},
		{"go build in a changed tree", &debug.BuildInfo{Main: debug.Module{Version: "(devel)"}, Settings: vcs("08bfb9a1c2d3", "true")}, true, "devel-08bfb9a-dirty"},
	} {
		if got := fromBuildInfo(tc.bi, tc.ok); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestStringPrefersTheLinkedVersion(t *testing.T) {
	old := Version
	t.Cleanup(func() { Version = old })
	Version = "1.0.0-1"
	if got := String(); got != "1.0.0-1" {
		t.Errorf("String() = %q, want the -X value 1.0.0-1", got)
	}
}
