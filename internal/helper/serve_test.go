package helper

import (
	"github.com/otpgate/otpgate/internal/pgtest"

	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/otpgate/otpgate/internal/protocol"
)

// clientEnv makes the test binary a client of a serving helper (see
// TestMain): it connects as whatever uid it was started with, sends one
// request and prints what it got as JSON.
const clientEnv = "OTPGATE_SERVE_TEST_CLIENT"

// clientJob is what such a client does.
type clientJob struct {
	Socket  string           `json:"socket"`
	Request protocol.Request `json:"request"`
	Answer  string           `json:"answer"`
	Hold    int              `json:"hold"` // connections to open and hold silent, instead
}

// clientResult is what it prints.
type clientResult struct {
	Verdict  string   `json:"verdict"`
	Err      string   `json:"err"`
	Messages []string `json:"messages"`
	Data     []Data   `json:"data"`
}

func TestMain(m *testing.M) {
	if job := os.Getenv(clientEnv); job != "" {
		os.Exit(serveClient(job))
	}
	code := m.Run()
	pgtest.StopShared()
	os.Exit(code)
}

func serveClient(job string) int {
	var j clientJob
	if err := json.Unmarshal([]byte(job), &j); err != nil {
		fmt.Println(err)
		return 2
	}
	if j.Hold > 0 {
		// Open j.Hold connections, say nothing, and wait to be killed.
		var held []net.Conn
		for range j.Hold {
			c, err := net.Dial("unix", j.Socket)
			if err != nil {
				fmt.Println("dial:", err)
				return 2
			}
			held = append(held, c)
		}
		fmt.Println("holding")
		time.Sleep(time.Minute)
		return 0
	}
	var r clientResult
	c, err := net.Dial("unix", j.Socket)
	if err == nil {
		ui := &script{answers: []string{j.Answer}}
		r.Verdict, err = Converse(c, j.Request, ui, 20*time.Second)
		r.Messages, r.Data = ui.messages, ui.data
	}
	if err != nil {
		r.Err = err.Error()
	}
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
	return 0
}

// serving is a Server on a socket in a directory every uid may enter.
type serving struct {
	*fixture
	socket string
	client string // a copy of the test binary other uids may run
	stop   func()
	done   chan struct{}
}

func newServing(t *testing.T, srv *Server) *serving {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("serve tests connect as other uids: run as root")
	}
	f, o := selfFixture(t, "[lockout]\nmax_failures = 3\n")
	o.Now = func() time.Time { return f.now }
	srv.Options = o
	srv.ShutdownWait = time.Second
	// The store stays root's; the socket's directory is open to all.
	for d := f.dir; d != "/tmp" && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	os.Chmod(filepath.Join(f.dir, "config.toml"), 0o644)
	sockDir := filepath.Join(f.dir, "run")
	os.Mkdir(sockDir, 0o755)
	socket := filepath.Join(sockDir, "helper.sock")
	lfd, err := Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	client := filepath.Join(f.dir, "client")
	if err := os.WriteFile(client, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &serving{fixture: f, socket: socket, client: client, stop: cancel, done: make(chan struct{})}
	go func() {
		if err := srv.Serve(ctx, lfd); err != nil {
			t.Errorf("Serve: %v", err)
		}
		close(s.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-s.done:
		case <-time.After(DefaultShutdownWait + 5*time.Second):
			t.Error("Serve did not return after its context ended")
		}
	})
	return s
}

// as runs one client as uid and returns its result.
func (s *serving) as(t *testing.T, uid int, req protocol.Request, answer string) clientResult {
	t.Helper()
	out := s.run(t, uid, clientJob{Socket: s.socket, Request: req, Answer: answer})
	var r clientResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("client as uid %d: %v: %s", uid, err, out)
	}
	return r
}

func (s *serving) run(t *testing.T, uid int, j clientJob) []byte {
	t.Helper()
	cmd := s.clientCmd(t, uid, j)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("client as uid %d: %v %s", uid, err, out)
	}
	return out
}

func (s *serving) clientCmd(t *testing.T, uid int, j clientJob) *exec.Cmd {
	b, _ := json.Marshal(j)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	cmd := exec.CommandContext(ctx, s.client, "-test.run=^$")
	// GORACE: a race-enabled child would sleep 1 s at exit.
	cmd.Env = []string{clientEnv + "=" + string(b), "GORACE=atexit_sleep_ms=0"}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(uid)}}
	return cmd
}

// TestServeTrustedAndSelf: uid 0 gets trusted mode, any other uid self
// mode for its own account, decided by SO_PEERCRED; nothing in the request
// widens that.
func TestServeTrustedAndSelf(t *testing.T) {
	s := newServing(t, &Server{})
	secret, _ := s.enroll(t, "carol")
	s.enroll(t, "alice")
	auth := func(user string) protocol.Request {
		return protocol.Request{Op: protocol.OpAuthenticate, User: user, Service: "test", Args: []string{"config=" + s.config}}
	}
	// Root (this process's children run as 0 too): trusted, any user.
	if r := s.as(t, 0, auth("carol"), s.code(t, secret, 0)); r.Verdict != protocol.ResultSuccess {
		t.Fatalf("root, right code: %+v", r)
	}
	// uid 4242 is carol: her own account, through the same socket.
	if r := s.as(t, 4242, auth("carol"), s.code(t, secret, 30*time.Second)); r.Verdict != protocol.ResultSuccess {
		t.Fatalf("carol for herself: %+v", r)
	}
	if r := s.as(t, 4242, protocol.Request{Op: protocol.OpStatus}, ""); r.Verdict != protocol.ResultSuccess || len(r.Data) != 1 || r.Data[0].User != "carol" {
		t.Fatalf("carol's status: %+v", r)
	}
	// ...but not alice's, however the request is dressed up.
	for _, req := range []protocol.Request{
		auth("alice"),
		{Op: protocol.OpStatus, User: "alice"},
		{Op: protocol.OpVerify, User: "alice"},
		{Op: protocol.OpBackupCodes, User: "alice"},
	} {
		if r := s.as(t, 4242, req, "000000"); r.Verdict == protocol.ResultSuccess || len(r.Data) != 0 {
			t.Errorf("carol asking %s for alice: %+v", req.Op, r)
		}
	}
	if st, _ := s.store.ReadState("alice"); st.Failures != 0 {
		t.Errorf("carol's requests counted %d failures against alice", st.Failures)
	}
	// A uid with no account gets nothing.
	if r := s.as(t, 4343, protocol.Request{Op: protocol.OpStatus}, ""); r.Verdict == protocol.ResultSuccess {
		t.Errorf("unknown uid: %+v", r)
	}
}

// TestServePerUIDLimit: one user holding many silent connections cannot
// starve the others; their own extra requests are told the helper is
// busy, and nothing is counted.
func TestServePerUIDLimit(t *testing.T) {
	s := newServing(t, &Server{PerUID: 3})
	secret, _ := s.enroll(t, "carol")
	hold := s.clientCmd(t, 4242, clientJob{Socket: s.socket, Hold: 20})
	out, err := hold.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := hold.Start(); err != nil {
		t.Fatal(err)
	}
	defer hold.Process.Kill()
	buf := make([]byte, 64)
	if n, _ := out.Read(buf); !strings.Contains(string(buf[:n]), "holding") {
		t.Fatalf("holder: %q", buf[:n])
	}
	// carol's own next request: busy.
	r := s.as(t, 4242, protocol.Request{Op: protocol.OpStatus}, "")
	if r.Verdict != protocol.ResultAuthErr || !strings.Contains(strings.Join(r.Messages, " "), "busy") {
		t.Fatalf("carol over her limit: %+v", r)
	}
	// root, and another user, are served at once.
	start := time.Now()
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "carol", Service: "test", Args: []string{"config=" + s.config}}
	if r := s.as(t, 0, req, s.code(t, secret, 0)); r.Verdict != protocol.ResultSuccess {
		t.Fatalf("root while carol holds connections: %+v", r)
	}
	if r := s.as(t, 4343, protocol.Request{Op: protocol.OpStatus}, ""); strings.Contains(strings.Join(r.Messages, " "), "busy") {
		t.Fatalf("another uid told busy: %+v", r)
	}
	// The refusals of the holder's 17 extra connections never hold up the
	// accept loop (each waits up to a second for its request).
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("others waited %v", d)
	}
	if st, _ := s.store.ReadState("carol"); st.Failures != 0 {
		t.Errorf("busy answers counted %d failures", st.Failures)
	}
}

// TestServeParallelExact: the exactness properties through the daemon:
// 20 parallel uses of one code, one accepted; 30 parallel wrong codes
// with max_failures 3, exactly 3 counted and the lock set.
func TestServeParallelExact(t *testing.T) {
	s := newServing(t, &Server{})
	secret, _ := s.enroll(t, "alice")
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "alice", Service: "test", Args: []string{"config=" + s.config}}
	code := s.code(t, secret, 0)
	var mu sync.Mutex
	verdicts := map[string]int{}
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			r := s.as(t, 0, req, code)
			mu.Lock()
			verdicts[r.Verdict]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if verdicts[protocol.ResultSuccess] != 1 {
		t.Fatalf("one code 20 times at once: %v, want exactly one success", verdicts)
	}
	verdicts = map[string]int{}
	for range 30 {
		wg.Go(func() {
			r := s.as(t, 0, req, "000000")
			mu.Lock()
			verdicts[r.Verdict]++
			mu.Unlock()
		})
	}
	wg.Wait()
	st, _ := s.store.ReadState("alice")
	if st.Failures != 3 || st.LockedUntil.IsZero() || verdicts[protocol.ResultSuccess] != 0 {
		t.Fatalf("30 wrong codes at once: %v, state %+v; want 3 counted and a lock", verdicts, st)
	}
}

// TestServeShutdown: a stopping daemon lets a session in progress end
// (its client is denied, never left hanging) and stops accepting.
func TestServeShutdown(t *testing.T) {
	s := newServing(t, &Server{})
	s.enroll(t, "alice")
	c, err := net.Dial("unix", s.socket)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "alice", Service: "test", Args: []string{"config=" + s.config}}
	p, _ := req.Encode()
	protocol.WriteFrame(c, protocol.Frame{Type: protocol.TypeRequest, Payload: p})
	f, err := protocol.ReadFrame(c)
	if err != nil || f.Type != protocol.TypePromptEchoOff {
		t.Fatalf("no prompt: %v %v", err, f.Type)
	}
	s.stop()
	select {
	case <-s.done:
	case <-time.After(DefaultShutdownWait + 5*time.Second):
		t.Fatal("Serve did not return")
	}
	if _, err := net.Dial("unix", s.socket); err == nil {
		t.Error("a stopped daemon still accepts")
	}
}

// TestDial: a client falls back to exec only when no daemon listens
// (no socket, or a socket nobody accepts on); a socket in a directory
// others may write, or not root's, is an error, never a fall back and
// never a conversation (it could be a fake daemon collecting codes).
func TestDial(t *testing.T) {
	s := newServing(t, &Server{})
	secret, _ := s.enroll(t, "alice")
	req := protocol.Request{Op: protocol.OpAuthenticate, User: "alice", Service: "test", Args: []string{"config=" + s.config}}
	v, err := Reach(s.socket, "/nonexistent/launcher", req, &script{answers: []string{s.code(t, secret, 0)}})
	if err != nil || v != protocol.ResultSuccess {
		t.Fatalf("Reach with a daemon: %s, %v", v, err)
	}

	dir := t.TempDir()
	if _, err := Dial(filepath.Join(dir, "none.sock")); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("no socket: %v, want ErrNoDaemon", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	fd, err := Listen(stale)
	if err != nil {
		t.Fatal(err)
	}
	syscall.Close(fd)
	if _, err := Dial(stale); !errors.Is(err, ErrNoDaemon) {
		t.Errorf("stale socket: %v, want ErrNoDaemon", err)
	}
	if _, err := Reach(stale, "/nonexistent/launcher", req, &script{}); err == nil || !strings.Contains(err.Error(), "launcher") {
		t.Errorf("stale socket and no launcher: %v, want the launcher's error", err)
	}

	open := filepath.Join(dir, "open")
	os.Mkdir(open, 0o755)
	fd, err = Listen(filepath.Join(open, "helper.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Close(fd)
	os.Chmod(open, 0o777)
	if _, err := Dial(filepath.Join(open, "helper.sock")); err == nil || errors.Is(err, ErrNoDaemon) {
		t.Errorf("socket in a world-writable directory: %v, want a refusal", err)
	}
	os.Chmod(open, 0o755)
	os.Chown(filepath.Join(open, "helper.sock"), 4242, 4242)
	if _, err := Dial(filepath.Join(open, "helper.sock")); err == nil || errors.Is(err, ErrNoDaemon) {
		t.Errorf("socket not root's: %v, want a refusal", err)
	}
}
