package doctor

import (
	"bufio"
	"os"
	"strings"
)

// Account is a line of /etc/passwd.
type Account struct {
	Name  string
	UID   string
	GID   string
	Shell string
}

// CanLogIn reports whether the account has a login shell.
func (a Account) CanLogIn() bool {
	return a.Shell != "" && !strings.HasSuffix(a.Shell, "/nologin") && !strings.HasSuffix(a.Shell, "/false")
}

// ReadPasswd reads a passwd file.
func ReadPasswd(path string) ([]Account, error) {
	var out []Account
	err := eachLine(path, func(f []string) {
		if len(f) >= 7 {
			out = append(out, Account{Name: f[0], UID: f[2], GID: f[3], Shell: f[6]})
		}
	})
	return out, err
}

// GroupMembers returns the members of group: its member list in the group
// file, and the accounts whose primary group it is.
func GroupMembers(groupPath string, accounts []Account, group string) ([]string, error) {
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
