package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
)

// pg is the PostgreSQL backend, set by postgres.go in otpgate-helper-pg
// (go build -tags postgres); the files-only otpgate-helper leaves it
// empty and hands a login whose config says backend = "postgres" to
// otpgate-helper-pg, which lies next to it. Linking PostgreSQL's driver
// would cost every login on a files host a third more start-up
// (docs/PERFORMANCE.md).
var pg struct {
	backend helper.Postgres
	reason  helper.DBReason
	close   func()
}

// pgHelperName is otpgate-helper-pg's name, in otpgate-helper's directory.
const pgHelperName = "otpgate-helper-pg"

// requestFDFlag passes otpgate-helper-pg the request otpgate-helper read,
// in a memfd of that number; the connection stays on standard input and
// output.
const requestFDFlag = "--request-fd="

// pgHelper returns the path of otpgate-helper-pg next to this program,
// after checking that only root can change it.
func pgHelper() (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("finding otpgate-helper's own path: %w", err)
	}
	path := filepath.Join(filepath.Dir(self), pgHelperName)
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return "", fmt.Errorf("%s: %w; install it (make install puts it next to otpgate-helper) or set backend = \"files\"", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG || st.Uid != 0 || st.Mode&0o022 != 0 {
		return "", fmt.Errorf("%s must be a regular file owned by root and not group- or world-writable", path)
	}
	return path, nil
}

// handoff execs otpgate-helper-pg for the request req of caller, with the
// connection on standard input and output as it is. It returns only when
// that failed.
func handoff(caller int) func(protocol.Request) error {
	return func(req protocol.Request) error {
		path, err := pgHelper()
		if err != nil {
			return err
		}
		b, err := req.Encode()
		if err != nil {
			return err
		}
		// Not close-on-exec: it is for the next program.
		fd, err := unix.MemfdCreate("otpgate-request", 0)
		if err != nil {
			return fmt.Errorf("handing the login to %s: %w", path, err)
		}
		f := os.NewFile(uintptr(fd), "request")
		_, err = f.Write(b)
		if err == nil {
			_, err = f.Seek(0, io.SeekStart)
		}
		if err != nil {
			f.Close()
			return fmt.Errorf("handing the login to %s: %w", path, err)
		}
		// Blocking again, as the module passed it: a descriptor that is
		// non-blocking at start-up becomes os.Stdin's in the runtime's
		// poller, and SocketFile could not register it again (no
		// deadlines, so no answer).
		if err := unix.SetNonblock(0, false); err != nil {
			f.Close()
			return fmt.Errorf("handing the login to %s: %w", path, err)
		}
		args := []string{path, requestFDFlag + strconv.Itoa(fd)}
		if caller != 0 {
			args = append(args, selfUIDFlag+strconv.Itoa(caller))
		}
		err = syscall.Exec(path, args, os.Environ())
		f.Close()
		unix.SetNonblock(0, true)
		return fmt.Errorf("running %s: %w", path, err)
	}
}

// handedRequest reads the request otpgate-helper handed over in fd (its
// memfd) and closes it.
func handedRequest(arg string) (*protocol.Request, error) {
	n, err := strconv.Atoi(strings.TrimPrefix(arg, requestFDFlag))
	if err != nil || n < 3 {
		return nil, fmt.Errorf("bad argument %q", arg)
	}
	f := os.NewFile(uintptr(n), "handed request")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("the handed request: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(f, protocol.MaxPayload+1))
	if err != nil {
		return nil, fmt.Errorf("the handed request: %w", err)
	}
	req, err := protocol.DecodeRequest(b)
	if err != nil {
		return nil, err
	}
	return &req, nil
}

// serveWithPostgres turns a files-only daemon into otpgate-helper-pg
// with the same arguments and environment (the socket from systemd
// included: the process stays the same) when the host's config says
// backend = "postgres" as the daemon starts, and otpgate-helper-pg is
// installed. On a files host the daemon stays the files-only helper: the
// driver would cost it memory and time for nothing (docs/PERFORMANCE.md).
// It returns when it does not exec; the daemon then serves the files
// backend and denies logins of a postgres config, saying to restart it.
func serveWithPostgres(log func(string)) {
	if pg.backend != nil {
		return
	}
	// selfConfig: the host's config (a test build names another).
	cfg, err := config.Load(selfConfig)
	if err != nil || cfg.Backend != config.BackendPostgres {
		return // a broken config is every request's to report
	}
	path, err := pgHelper()
	if errors.Is(err, os.ErrNotExist) {
		return // a files-only install: nothing to say
	}
	if err != nil {
		log("no PostgreSQL backend: " + err.Error())
		return
	}
	err = syscall.Exec(path, os.Args, os.Environ())
	log(fmt.Sprintf("running %s: %v; serving without the PostgreSQL backend", path, err))
}
