package helper

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// maxPasswd bounds how much of the passwd file is read.
const maxPasswd = 16 << 20

// lookupUID returns the name of the first account with uid in the passwd
// file at path. It reads the file itself, without NSS or cgo: self mode
// serves accounts listed there.
func lookupUID(path string, uid int) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(io.LimitReader(f, maxPasswd))
	sc.Buffer(make([]byte, 0, 4096), 64<<10)
	want := strconv.Itoa(uid)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) >= 3 && fields[2] == want && fields[0] != "" && !strings.HasPrefix(fields[0], "+") && !strings.HasPrefix(fields[0], "-") {
			return fields[0], nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", fmt.Errorf("reading %s: %w", path, err)
	}
	return "", errors.New("no such uid")
}
