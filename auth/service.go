package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"sekisho/lookup"
	"sekisho/policy"
)

// Defaults, used where Config leaves a field at its zero value.
const (
	DefaultMaxFailures          = 5
	DefaultFailureWindow        = 10 * time.Minute
	DefaultMaxConcurrentBinds   = 10
	DefaultBindWait             = time.Second
	DefaultMaxRecipientsPerHour = 500
	DefaultMaxMessagesPerHour   = 100
	DefaultMaxTracked           = 100_000
	DefaultTagSeparator         = lookup.DefaultLDAPTagSeparator

	// MaxPasswordBytes is the longest password Login passes to the
	// directory (lookup.MaxAuthPasswordBytes): longer ones are refused
	// without a bind.
	MaxPasswordBytes = lookup.MaxAuthPasswordBytes
	// MaxUserBytes is the longest user name Login passes on: RFC 5321
	// §4.5.3.1.3's limit for a whole path. Longer names are refused without
	// a bind (and are not kept whole as throttle keys).
	MaxUserBytes = 256
)

// Config configures a Service. The first fields are sekisho's auth config
// section (DESIGN.md §7: max_failures, failure_window, ...).
type Config struct {
	// MaxFailures failed logins within FailureWindow, from one client
	// address or for one user name, make further attempts be refused
	// without asking the directory (see the package README for the exact
	// token-bucket semantics). Default DefaultMaxFailures.
	MaxFailures   int
	FailureWindow time.Duration // default DefaultFailureWindow
	// MaxConcurrentBinds caps the directory checks (search and bind) in
	// flight; an attempt that gets no slot within BindWait gets 454.
	// Default DefaultMaxConcurrentBinds.
	MaxConcurrentBinds int
	BindWait           time.Duration // default DefaultBindWait
	// MaxRecipientsPerHour and MaxMessagesPerHour limit each authenticated
	// user (per gateway, in memory). Default DefaultMaxRecipientsPerHour and
	// DefaultMaxMessagesPerHour; a negative value turns the limit off.
	MaxRecipientsPerHour, MaxMessagesPerHour int
	// MaxTracked bounds each of the in-memory maps (client addresses, user
	// names, users' sending counters); the least recently used entry goes
	// first. Default DefaultMaxTracked.
	MaxTracked int
	// TagSeparator is copied to User.TagSeparator: the characters that
	// start an address extension (user+tag@). Default DefaultTagSeparator;
	// NoTags turns extensions off (Owns then matches whole addresses only).
	TagSeparator string
	NoTags       bool
	// Logger gets one line per failed, refused or throttled attempt and per
	// login; nil: slog.Default(). Passwords are never logged.
	Logger *slog.Logger
	// Now is the clock of the throttles and limits; nil: time.Now. (The
	// maps' expiry of idle entries runs on real time: see the README.)
	Now func() time.Time
}

// Directory checks a user's password; *lookup.Directory is one.
type Directory interface {
	Authenticate(ctx context.Context, user, password string) lookup.AuthResult
}

// User is an authenticated user.
type User struct {
	// Name is the user name as the client typed it (uid or address).
	Name string
	// DN is the user's directory entry.
	DN string
	// Addresses are the user's addresses (the directory's address
	// attributes), lower-cased.
	Addresses []string
	// TagSeparator is the set of characters that start an address
	// extension for Owns ("" none): Login sets it from Config.
	TagSeparator string
}

// Owns reports whether addr is one of the user's addresses. The comparison
// ignores case in the domain and in the local part: RFC 5321 §2.4 lets a
// local part be case-sensitive, but the directory's mail attributes match
// case-insensitively (caseIgnoreIA5Match), so "Alice@" and "alice@" are the
// same mailbox there, and the same user. An extension is allowed: with
// TagSeparator "+", user+tag@dom is owned when user@dom is (mail to it is
// delivered to user@dom, DESIGN.md §4), unless user+tag@dom itself is an
// address of the user. An address without '@' or with an empty local part is
// owned only if it equals an address exactly.
func (u User) Owns(addr string) bool {
	if addr == "" {
		return false
	}
	if u.hasAddress(addr) {
		return true
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || u.TagSeparator == "" {
		return false
	}
	local := addr[:at]
	if i := strings.IndexAny(local, u.TagSeparator); i > 0 {
		return u.hasAddress(local[:i] + addr[at:])
	}
	return false
}

func (u User) hasAddress(addr string) bool {
	for _, a := range u.Addresses {
		if strings.EqualFold(a, addr) {
			return true
		}
	}
	return false
}

// Service checks logins and counts what users send. It is safe for
// concurrent use; one Service serves all submission listeners of a gateway.
type Service struct {
	dir   Directory
	cfg   Config
	log   *slog.Logger
	binds chan struct{}

	mu       sync.Mutex
	ips      *expirable.LRU[string, *failures] // by client address (IPv6: /64)
	users    *expirable.LRU[string, *failures] // by "name:" user name and "dn:" entry
	aliases  *expirable.LRU[string, string]    // user name → DN of its entry
	messages *expirable.LRU[string, *sending]
	rcpts    *expirable.LRU[string, *sending]
}

// New returns a Service that checks passwords with dir; cfg's zero fields
// get the defaults.
func New(dir Directory, cfg Config) *Service {
	if cfg.MaxFailures <= 0 {
		cfg.MaxFailures = DefaultMaxFailures
	}
	if cfg.FailureWindow <= 0 {
		cfg.FailureWindow = DefaultFailureWindow
	}
	if cfg.MaxConcurrentBinds <= 0 {
		cfg.MaxConcurrentBinds = DefaultMaxConcurrentBinds
	}
	if cfg.BindWait <= 0 {
		cfg.BindWait = DefaultBindWait
	}
	if cfg.MaxRecipientsPerHour == 0 {
		cfg.MaxRecipientsPerHour = DefaultMaxRecipientsPerHour
	}
	if cfg.MaxMessagesPerHour == 0 {
		cfg.MaxMessagesPerHour = DefaultMaxMessagesPerHour
	}
	if cfg.MaxTracked <= 0 {
		cfg.MaxTracked = DefaultMaxTracked
	}
	if cfg.TagSeparator == "" {
		cfg.TagSeparator = DefaultTagSeparator
	}
	if cfg.NoTags {
		cfg.TagSeparator = ""
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// A failure bucket is full again (as good as forgotten) at the latest
	// MaxFailures windows after its last failure; a sending bucket one hour
	// after its last use.
	failureTTL := time.Duration(cfg.MaxFailures) * cfg.FailureWindow
	s := &Service{
		dir:      dir,
		cfg:      cfg,
		log:      cfg.Logger,
		binds:    make(chan struct{}, cfg.MaxConcurrentBinds),
		ips:      expirable.NewLRU[string, *failures](cfg.MaxTracked, nil, failureTTL),
		users:    expirable.NewLRU[string, *failures](cfg.MaxTracked, nil, failureTTL),
		aliases:  expirable.NewLRU[string, string](cfg.MaxTracked, nil, failureTTL),
		messages: expirable.NewLRU[string, *sending](cfg.MaxTracked, nil, time.Hour),
		rcpts:    expirable.NewLRU[string, *sending](cfg.MaxTracked, nil, time.Hour),
	}
	return s
}

// Login checks one attempt. It returns the user and nil on success, or the
// reply for the client: policy.AuthFailed (535 5.7.8: the directory said
// no, or the credentials were refused unseen), policy.AuthTempFailed (454
// 4.7.0: the directory could not tell, or was too busy),
// policy.AuthThrottledUser (454 4.7.0) or policy.AuthThrottledIP (421
// 4.7.0 — the caller disconnects after a 421).
//
// In order: the client address's and the user name's failure budgets (no
// directory request when either is spent); the credentials' shape (empty
// password, NUL, too long: 535 without a bind); a bind slot; the directory.
// Only a 535 counts as a failure: the directory's trouble is not the
// client's. Each outcome is logged on log (the session's logger, which names
// the session and client; the service's own with the address when nil),
// a refusal with its reply.
func (s *Service) Login(ctx context.Context, log *slog.Logger, ip netip.Addr, user, password string) (User, *policy.Reply) {
	now := s.cfg.Now()
	if log == nil {
		log = s.log.With("user", logName(user), "ip", ip.String())
	} else {
		log = log.With("user", logName(user))
	}
	name := strings.ToLower(user)
	if len(name) > MaxUserBytes {
		name = name[:MaxUserBytes]
	}

	// Reserve the attempt against both budgets, so that attempts in
	// parallel cannot get past a budget that their failures would spend.
	s.mu.Lock()
	ipF := s.tracked(s.ips, ipKey(ip))
	if !ipF.mayTry(now) {
		s.mu.Unlock()
		log.Info("auth refused", "outcome", "throttled", "reason", "too many failures from this address", "reply", policy.AuthThrottledIP.String())
		return User{}, policy.AuthThrottledIP
	}
	userF := []*failures{s.tracked(s.users, "name:"+name)}
	if dn, ok := s.aliases.Get(name); ok {
		userF = append(userF, s.tracked(s.users, "dn:"+dn))
	}
	for _, f := range userF {
		if !f.mayTry(now) {
			s.mu.Unlock()
			log.Info("auth refused", "outcome", "throttled", "reason", "too many failures for this user", "reply", policy.AuthThrottledUser.String())
			return User{}, policy.AuthThrottledUser
		}
	}
	ipF.pending++
	for _, f := range userF {
		f.pending++
	}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		ipF.pending--
		for _, f := range userF {
			f.pending--
		}
		s.mu.Unlock()
	}()

	if reason := refuseUnseen(user, password); reason != "" {
		s.failed(ip, name, "")
		log.Info("auth failed", "outcome", "invalid", "reason", reason, "reply", policy.AuthFailed.String())
		return User{}, policy.AuthFailed
	}

	wait := time.NewTimer(s.cfg.BindWait)
	defer wait.Stop()
	select {
	case s.binds <- struct{}{}:
	case <-wait.C:
		log.Warn("auth failed", "outcome", "temporary", "reason", "all directory slots busy", "reply", policy.AuthTempFailed.String())
		return User{}, policy.AuthTempFailed
	case <-ctx.Done():
		log.Warn("auth failed", "outcome", "temporary", "reason", "cancelled waiting for a directory slot: "+ctx.Err().Error(), "reply", policy.AuthTempFailed.String())
		return User{}, policy.AuthTempFailed
	}
	res := s.dir.Authenticate(ctx, user, password)
	<-s.binds

	switch res.Outcome {
	case lookup.AuthValid:
		s.succeeded(name, res.DN)
		u := User{Name: user, DN: res.DN, TagSeparator: s.cfg.TagSeparator}
		seen := map[string]bool{}
		for _, a := range res.Addresses {
			a = strings.ToLower(a)
			if !seen[a] {
				seen[a] = true
				u.Addresses = append(u.Addresses, a)
			}
		}
		log.Info("auth succeeded", "dn", res.DN, "addresses", len(u.Addresses))
		return u, nil
	case lookup.AuthInvalid:
		s.failed(ip, name, res.DN)
		log.Info("auth failed", "outcome", "invalid", "dn", res.DN, "reason", res.Reason, "reply", policy.AuthFailed.String())
		return User{}, policy.AuthFailed
	}
	log.Warn("auth failed", "outcome", "temporary", "dn", res.DN, "reason", res.Reason, "reply", policy.AuthTempFailed.String())
	return User{}, policy.AuthTempFailed
}

// ExchangeFailed is the reply for an error of Mechanism.Next, like
// ExchangeReply, with the attempt logged (on log, the session's logger,
// when not nil) with the reply; an ErrAuthzid (a credential
// refused, not a syntax error) also counts as a failed login for the client
// address and the user name.
func (s *Service) ExchangeFailed(log *slog.Logger, ip netip.Addr, m Mechanism, err error) *policy.Reply {
	user, _ := m.Credentials()
	if log == nil {
		log = s.log.With("user", logName(user), "ip", ip.String())
	} else {
		log = log.With("user", logName(user))
	}
	r := ExchangeReply(err)
	log.Info("auth failed", "outcome", "invalid", "reason", err.Error(), "reply", r.String())
	if errors.Is(err, ErrAuthzid) {
		s.failed(ip, strings.ToLower(user), "")
	}
	return r
}

// refuseUnseen says why credentials are refused without asking the
// directory, or "". An empty password would make the bind an
// unauthenticated one, which succeeds (RFC 4513 §5.1.2).
func refuseUnseen(user, password string) string {
	switch {
	case user == "":
		return "empty user name"
	case password == "":
		return "empty password"
	case strings.IndexByte(user, 0) >= 0:
		return "NUL in user name"
	case strings.IndexByte(password, 0) >= 0:
		return "NUL in password"
	case len(user) > MaxUserBytes:
		return "user name too long"
	case len(password) > MaxPasswordBytes:
		return "password too long"
	}
	return ""
}

// logName is the user name for the log: at most MaxUserBytes of it (the
// handler quotes control characters).
func logName(user string) string {
	if len(user) > MaxUserBytes {
		return user[:MaxUserBytes] + "..."
	}
	return user
}

// ipKey is the throttle key of a client address: IPv4 addresses as they
// are, IPv6 addresses by their /64 (a single host usually has a whole /64
// to pick addresses from).
func ipKey(ip netip.Addr) string {
	ip = ip.Unmap()
	if ip.Is6() {
		p, _ := ip.Prefix(64)
		return p.String()
	}
	return ip.String()
}
