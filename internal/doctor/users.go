package doctor

import (
	"bufio"
	"os"
	"strings"

	"github.com/otpgate/otpgate/internal/passwd"
)

// GroupMembers returns the members of group: its member list in the group
// file, and the accounts whose primary group it is.
func GroupMembers(groupPath string, accounts []passwd.Entry, group string) ([]string, error) {
	var members []string
	gid := ""
	err := eachLine(groupPath, func(f []string) {
		if len(f) >= 4 && f[0] == group {
			gid = f[2]
			for _, m := range strings.Split(f[3], ",") {
				if m != "" {
					members = append(members, m)
				}
			}
		}
	})
	if err != nil {
		return nil, err
	}
	for _, a := range accounts {
		if gid != "" && a.GID == gid {
			members = append(members, a.Name)
		}
	}
	return members, nil
}

func eachLine(path string, fn func([]string)) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fn(strings.Split(line, ":"))
	}
	return sc.Err()
}
