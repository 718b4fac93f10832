package doctor

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// LauncherName is the file name of otpgate-launch-helper, the setuid-root
// launcher that make install puts next to the helper.
const LauncherName = "otpgate-launch-helper"

// CheckHelper checks the installed helper or launcher, by its file name:
// both must be root-owned regular files that root alone can write, in
// directories only root can change (the PAM module refuses anything else,
// so logins would fail). The launcher (LauncherName) must be setuid; the
// helper must not be, since it refuses to run setuid.
func CheckHelper(path string) []Finding {
	return checkProgram(path, true)
}

// checkProgram is CheckHelper; needLauncher false (a daemon serves the
// users) makes a missing or non-setuid launcher no problem.
func checkProgram(path string, needLauncher bool) []Finding {
	var out []Finding
	add := func(problem, fix string) {
		out = append(out, Finding{Check: "files", Context: path, Problem: problem, Fix: fix})
	}
	launcher := filepath.Base(path) == LauncherName
	what, mode := "the helper", "755"
	if launcher {
		what, mode = "the launcher", "4755"
	}
	st, err := os.Lstat(path)
	switch {
	case err != nil && launcher && !needLauncher:
		return nil
	case err != nil && launcher:
		add(fmt.Sprintf("the launcher is missing (%v): users cannot enroll or see their status themselves, and PAM programs that run as the user (screen lockers) deny (logins through sshd, sudo and su still work)", err), "run make install, or install the otpgate package")
		return out
	case err != nil:
		add(fmt.Sprintf("the helper is missing (%v): every login through pam_otpgate is denied", err), "run make install, or install the otpgate package")
		return out
	}
	sys := st.Sys().(*syscall.Stat_t)
	switch {
	case !st.Mode().IsRegular():
		add(what+" is not a regular file", "reinstall otpgate")
	case sys.Uid != 0 || sys.Gid != 0:
		add(fmt.Sprintf("%s is owned by %d:%d; pam_otpgate refuses it", what, sys.Uid, sys.Gid), "chown root:root "+path)
	case st.Mode().Perm()&0o022 != 0:
		add(fmt.Sprintf("%s has mode %04o: someone other than root can replace it", what, modeBits(st)), "chmod "+mode+" "+path)
	case launcher && st.Mode()&fs.ModeSetuid == 0 && needLauncher:
		add("the launcher is not setuid: users cannot enroll or see their status themselves, and PAM programs that run as the user (screen lockers) deny (logins through sshd, sudo and su still work)", "chmod 4755 "+path)
	case !launcher && st.Mode()&(fs.ModeSetuid|fs.ModeSetgid) != 0:
		add(fmt.Sprintf("the helper has mode %04o: it refuses to run setuid or setgid, so every login through pam_otpgate is denied (the setuid program is %s next to it)", modeBits(st), LauncherName), "chmod 755 "+path)
	}
	for dir := filepath.Dir(path); ; dir = filepath.Dir(dir) {
		out = append(out, checkRootDir(dir)...)
		if dir == "/" {
			break
		}
	}
	return out
}

// CheckModule checks the PAM module file.
func CheckModule(path string) []Finding {
	st, err := os.Lstat(path)
	if err != nil {
		return []Finding{{Check: "files", Context: path, Problem: fmt.Sprintf("pam_otpgate.so is missing (%v)", err), Fix: "run make install, or install the otpgate package"}}
	}
	sys := st.Sys().(*syscall.Stat_t)
	if !st.Mode().IsRegular() || sys.Uid != 0 || st.Mode().Perm()&0o022 != 0 {
		return []Finding{{Check: "files", Context: path, Problem: fmt.Sprintf("pam_otpgate.so is owned by uid %d with mode %04o", sys.Uid, modeBits(st)), Fix: "chown root:root " + path + " && chmod 644 " + path}}
	}
	return nil
}

// CheckStore checks the store directory and its files against the rules
// the helper enforces (which would otherwise deny logins one by one).
func CheckStore(dir string) []Finding {
	var out []Finding
	add := func(path, problem, fix string) {
		out = append(out, Finding{Check: "files", Context: path, Problem: problem, Fix: fix})
	}
	st, err := os.Lstat(dir)
	if os.IsNotExist(err) {
		return nil // made at the first enrollment
	}
	if err != nil {
		add(dir, err.Error(), "check the store path in config.toml")
		return out
	}
	if !st.IsDir() {
		add(dir, "the store is not a directory (a symlink is refused too)", "point store in config.toml at the real directory")
		return out
	}
	out = append(out, checkRootDir(dir)...)
	if sys := st.Sys().(*syscall.Stat_t); sys.Uid == 0 && st.Mode().Perm()&0o077 != 0 {
		add(dir, fmt.Sprintf("the store has mode %04o; only root needs to enter it", modeBits(st)), "chmod 700 "+dir)
	}
	for _, sub := range []string{"users", "state", "locks"} {
		entries, err := os.ReadDir(filepath.Join(dir, sub))
		if err != nil {
			continue
		}
		out = append(out, checkRootDir(filepath.Join(dir, sub))...)
		for _, e := range entries {
			p := filepath.Join(dir, sub, e.Name())
			fi, err := os.Lstat(p)
			if err != nil {
				continue
			}
			sys := fi.Sys().(*syscall.Stat_t)
			switch {
			case !fi.Mode().IsRegular():
				add(p, "not a regular file: otpgate refuses it and denies that user", "remove it")
			case sys.Uid != 0:
				add(p, fmt.Sprintf("owned by uid %d: otpgate refuses it and denies that user", sys.Uid), "chown root:root "+p)
			case fi.Mode().Perm()&0o077 != 0:
				add(p, fmt.Sprintf("mode %04o: otpgate refuses it and denies that user", modeBits(fi)), "chmod 600 "+p)
			case sys.Nlink != 1:
				add(p, fmt.Sprintf("%d hard links: otpgate refuses it", sys.Nlink), "remove the other links")
			}
		}
	}
	return out
}

// checkRootDir reports a directory that someone other than root could
// change (a root-owned sticky directory such as /tmp is allowed).
func checkRootDir(dir string) []Finding {
	st, err := os.Lstat(dir)
	if err != nil {
		return []Finding{{Check: "files", Context: dir, Problem: err.Error(), Fix: "create it, owned by root"}}
	}
	sys := st.Sys().(*syscall.Stat_t)
	if st.Mode()&fs.ModeSymlink != 0 {
		return []Finding{{Check: "files", Context: dir, Problem: "a symbolic link in otpgate's paths; otpgate never follows them", Fix: "use the real path"}}
	}
	if sys.Uid != 0 {
		return []Finding{{Check: "files", Context: dir, Problem: fmt.Sprintf("owned by uid %d", sys.Uid), Fix: "chown root:root " + dir}}
	}
	if st.Mode().Perm()&0o022 != 0 && st.Mode()&fs.ModeSticky == 0 {
		return []Finding{{Check: "files", Context: dir, Problem: fmt.Sprintf("mode %04o: others can write it", modeBits(st)), Fix: "chmod go-w " + dir}}
	}
	return nil
}

func modeBits(fi fs.FileInfo) uint32 {
	return uint32(fi.Sys().(*syscall.Stat_t).Mode & 0o7777)
}
