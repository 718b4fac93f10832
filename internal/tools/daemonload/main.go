// Command daemonload puts load on a running otpgate-helper daemon
// (otpgate-helper --serve or --listen PATH): it speaks the helper's
// protocol directly over the socket, as the PAM module does (one
// authenticate request per connection, through helper.Converse), from
// -clients connections at once, and prints one JSON line with the count,
// the elapsed time, the rate and the spread of the latencies.
//
// Every attempt answers a well-formed six-digit code that is none of the
// user's codes within two steps of now, so each one costs the daemon what
// a real wrong code costs: the config read, the user's lock, the files
// read, every step of the window computed, and the one durable write of
// the attempt (a right code makes the same one write; it cannot be
// repeated, a code is accepted once). To keep the lockout from changing
// that work, the failure count of each user is cleared (as otpgate unlock
// does, through internal/account) before every -reset-every-th attempt on
// that user, with no attempt on that user in flight; the config's
// max_failures must be above -reset-every. Those clears are extra writes
// under the same lock, inside the timed run: they make the rate a little
// lower, never higher.
//
// Run as root (the daemon trusts uid 0, the PAM module's uid, and the
// tool writes the store):
//
//	daemonload -socket PATH -config PATH -users FILE [-clients 16] [-n 5000] [-reset-every 90] [-admin-dsn DSN]
//
// With -admin-dsn, the config says backend = "postgres" and the users are
// in that database (docs/postgres.md): their secrets are read, and their
// failure counts cleared, through the administrator's DSN; the database's
// max_failures must be above -reset-every.
//
// FILE names the users, enrolled in the config's store, one per line; the
// attempts go to them round robin (the secrets are read from the store,
// to pick codes that are wrong). The exit status is 1 if any answer was not
// the denial a wrong code gets.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/otpgate/otpgate/internal/account"
	"github.com/otpgate/otpgate/internal/config"
	"github.com/otpgate/otpgate/internal/helper"
	"github.com/otpgate/otpgate/internal/protocol"
	"github.com/otpgate/otpgate/internal/totp"
	"github.com/otpgate/otpgate/keystore"
)

// Result is the JSON line daemonload prints.
type Result struct {
	Clients    int            `json:"clients"`
	Users      int            `json:"users"`
	N          int            `json:"n"`
	ElapsedNS  int64          `json:"elapsed_ns"`
	PerSecond  float64        `json:"per_second"`
	P50NS      int64          `json:"p50_ns"`
	P90NS      int64          `json:"p90_ns"`
	P99NS      int64          `json:"p99_ns"`
	MaxNS      int64          `json:"max_ns"`
	Resets     int64          `json:"resets"`
	Verdicts   map[string]int `json:"verdicts"`
	Errors     int            `json:"errors"`
	FirstError string         `json:"first_error,omitempty"`
	ClientCPU  int64          `json:"client_cpu_ns"` // this process, user and system
}

func main() {
	socket := flag.String("socket", "", "the daemon's socket")
	cfgPath := flag.String("config", "", "the config the requests name (config=), as a pam.d line would; its store is the one cleared")
	usersFile := flag.String("users", "", "file of user names, one per line, enrolled in the config's store")
	clients := flag.Int("clients", 16, "connections at once")
	n := flag.Int("n", 5000, "authentications in all")
	resetEvery := flag.Int("reset-every", 90, "clear a user's failure count before every this many attempts on it (below the config's max_failures)")
	flag.StringVar(&adminDSN, "admin-dsn", "", "the users are in this PostgreSQL database (the config's backend = \"postgres\"); secrets are read and failures cleared as this administrator")
	flag.Parse()
	if *socket == "" || *cfgPath == "" || *usersFile == "" || *clients < 1 || *n < 1 || *resetEvery < 1 {
		fmt.Fprintln(os.Stderr, "usage: daemonload -socket PATH -config PATH -users FILE [-clients 16] [-n 5000] [-reset-every 90]")
		os.Exit(2)
	}
	res, err := run(*socket, *cfgPath, *usersFile, *clients, *n, *resetEvery)
	if err != nil {
		fmt.Fprintln(os.Stderr, "daemonload:", err)
		os.Exit(1)
	}
	json.NewEncoder(os.Stdout).Encode(res)
	if res.Errors > 0 || res.Verdicts[protocol.ResultAuthErr] != res.N {
		fmt.Fprintf(os.Stderr, "daemonload: %d of %d answers were not the denial of a wrong code (verdicts %v, errors %d, first: %s)\n",
			res.N-res.Verdicts[protocol.ResultAuthErr], res.N, res.Verdicts, res.Errors, res.FirstError)
		os.Exit(1)
	}
}

// user is one enrolled user and what the run keeps about it.
type user struct {
	name   string
	secret []byte
	params totp.Params
	gate   sync.RWMutex // attempts hold it shared, the clear exclusively
	count  atomic.Int64 // attempts started
}

func run(socket, cfgPath, usersFile string, clients, n, resetEvery int) (*Result, error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("run as root: the daemon trusts uid 0 only for authenticate, and the failure counts are cleared in the store")
	}
	// The daemon wants a clean absolute path, as in pam.d.
	cfgPath, err := filepath.Abs(cfgPath)
	if err != nil {
		return nil, err
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return nil, err
	}
	var (
		users []*user
		clear func(name string) error
	)
	if adminDSN != "" {
		users, clear, err = dbUsers(usersFile, resetEvery)
	} else {
		if cfg.MaxFailures <= resetEvery {
			return nil, fmt.Errorf("%s: lockout.max_failures is %d; it must be above -reset-every %d, or the lockout changes what is measured", cfgPath, cfg.MaxFailures, resetEvery)
		}
		mgr := &account.Manager{Store: keystore.New(cfg.Store), Config: cfg}
		users, err = readUsers(usersFile, mgr.Store)
		clear = mgr.Unlock
	}
	if err != nil {
		return nil, err
	}
	// Every user starts from zero failures.
	for _, u := range users {
		if err := clear(u.name); err != nil {
			return nil, fmt.Errorf("clearing %s: %w", u.name, err)
		}
	}
	req := protocol.Request{Op: protocol.OpAuthenticate, Service: "otpgate-daemonload", RHost: "127.0.0.1", Args: []string{"config=" + cfgPath}}

	var (
		next     atomic.Int64 // attempts handed out
		resets   atomic.Int64
		mu       sync.Mutex
		lat      = make([]time.Duration, 0, n)
		verdicts = map[string]int{}
		errs     int
		first    string
	)
	record := func(d time.Duration, verdict string, err error) {
		mu.Lock()
		defer mu.Unlock()
		lat = append(lat, d)
		if err != nil {
			errs++
			if first == "" {
				first = err.Error()
			}
			return
		}
		verdicts[verdict]++
	}
	var ru0 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for c := 0; c < clients; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-startGate
			for {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				u := users[i%int64(len(users))]
				if u.count.Add(1)%int64(resetEvery) == 0 {
					// No attempt on u in flight, none starts until done.
					u.gate.Lock()
					err := clear(u.name)
					u.gate.Unlock()
					if err != nil {
						record(0, "", fmt.Errorf("clearing %s: %w", u.name, err))
						continue
					}
					resets.Add(1)
				}
				u.gate.RLock()
				r := req
				r.User = u.name
				start := time.Now()
				verdict, err := attempt(socket, r, wrongCode(u, time.Now()))
				d := time.Since(start)
				u.gate.RUnlock()
				record(d, verdict, err)
			}
		}()
	}
	start := time.Now()
	close(startGate)
	wg.Wait()
	elapsed := time.Since(start)
	var ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)

	slices.Sort(lat)
	pct := func(p float64) int64 { return int64(lat[int(p*float64(len(lat)-1))]) }
	return &Result{
		Clients: clients, Users: len(users), N: n, ElapsedNS: int64(elapsed),
		PerSecond: float64(n) / elapsed.Seconds(),
		P50NS:     pct(0.5), P90NS: pct(0.9), P99NS: pct(0.99), MaxNS: int64(lat[len(lat)-1]),
		Resets: resets.Load(), Verdicts: verdicts, Errors: errs, FirstError: first,
		ClientCPU: cpuNS(ru1) - cpuNS(ru0),
	}, nil
}

func cpuNS(ru syscall.Rusage) int64 { return ru.Utime.Nano() + ru.Stime.Nano() }

// attempt is one connection: the request, the code for the prompt, the
// verdict.
func attempt(socket string, req protocol.Request, code string) (string, error) {
	c, err := helper.Dial(socket)
	if err != nil {
		return "", err
	}
	defer c.(io.Closer).Close()
	return helper.Converse(c, req, answer(code), 30*time.Second)
}

// answer is the person at the prompt: it gives the code and ignores the
// messages.
type answer string

func (a answer) Prompt(string, bool) (string, error) { return string(a), nil }
func (answer) Message(string, bool)                  {}
func (answer) Data(helper.Data) error                { return errors.New("unexpected data frame") }

// wrongCode is a well-formed code that is none of u's codes within two
// steps of now.
func wrongCode(u *user, now time.Time) string {
	step := totp.Step(now, u.params.Period)
	var near []string
	for d := int64(-2); d <= 2; d++ {
		c, _ := totp.CodeAt(u.secret, uint64(step+d), u.params)
		near = append(near, c)
	}
	for i := 0; ; i++ {
		c := fmt.Sprintf("%0*d", u.params.Digits, (i*111111+123456)%1000000)
		if !slices.Contains(near, c) {
			return c
		}
	}
}

// readUsers reads the names in path and each one's enrollment in store.
func readUsers(path string, store *keystore.Store) ([]*user, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var users []*user
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 0 {
			continue
		}
		en, err := store.ReadUser(fields[0])
		if err != nil {
			return nil, fmt.Errorf("%s: %w (enroll the users of %s first)", path, err, path)
		}
		users = append(users, &user{name: fields[0], secret: en.Authenticators[0].Secret, params: en.Authenticators[0].Params})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(users) == 0 {
		return nil, fmt.Errorf("%s: no user names", path)
	}
	return users, nil
}

// adminDSN is -admin-dsn.
var adminDSN string

// dbUsers reads the users named in path from the database of adminDSN,
// and returns them with the function that clears a user's failures there.
func dbUsers(path string, resetEvery int) ([]*user, func(string) error, error) {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return nil, nil, err
	}
	var maxFailures int
	if err := conn.QueryRow(ctx, `SELECT max_failures FROM otpgate.policy`).Scan(&maxFailures); err != nil {
		return nil, nil, err
	}
	if maxFailures <= resetEvery {
		return nil, nil, fmt.Errorf("the database's max_failures is %d; it must be above -reset-every %d", maxFailures, resetEvery)
	}
	names, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var users []*user
	for _, name := range strings.Fields(string(names)) {
		u := &user{name: name}
		if err := conn.QueryRow(ctx, `SELECT a.secret, a.algorithm, a.digits, a.period FROM otpgate.authenticators a
			JOIN otpgate.users u ON u.id = a.user_id WHERE u.name = $1 ORDER BY a.id LIMIT 1`, name).
			Scan(&u.secret, &u.params.Algorithm, &u.params.Digits, &u.params.Period); err != nil {
			return nil, nil, fmt.Errorf("%s: %s: %w (enroll the users in the database first)", path, name, err)
		}
		users = append(users, u)
	}
	if len(users) == 0 {
		return nil, nil, fmt.Errorf("%s: no user names", path)
	}
	var mu sync.Mutex
	return users, func(name string) error {
		mu.Lock()
		defer mu.Unlock()
		_, err := conn.Exec(ctx, `UPDATE otpgate.user_state SET failures = 0, locked_until = NULL
			WHERE user_id = (SELECT id FROM otpgate.users WHERE name = $1)`, name)
		return err
	}, nil
}
