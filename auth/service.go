package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"sekisho/greylist"
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
	// address or for one user (its entry, or the NameKey of a name whose
	// entry is not known), make further attempts be refused without a bind
	// (see the package README for the exact token-bucket semantics).
	// Default DefaultMaxFailures.
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
	// Shared, when set (the Redis state store), keeps the failure
	// budgets and the hourly limits for every gateway on it, instead of
	// in this process's memory (shared.go). The name → entry map stays
	// in memory: it only saves a search.
	Shared greylist.Buckets
	// SharedTimeout bounds one call to Shared; default
	// DefaultSharedTimeout.
	SharedTimeout time.Duration
}

// Directory checks a user's password; *lookup.Directory is one. mayBind is
// asked with the DN of the user's entry once the directory has found it,
// before the password is tried: false is lookup.AuthNotTried, without a bind
// (see lookup.Directory.AuthenticateIf).
type Directory interface {
	AuthenticateIf(ctx context.Context, user, password string, mayBind func(dn string) bool) lookup.AuthResult
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

	sharedErrors  atomic.Uint64
	sharedHealthy atomic.Bool
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
	if cfg.SharedTimeout <= 0 {
		cfg.SharedTimeout = DefaultSharedTimeout
	}
	// A failure bucket is full again (as good as forgotten) at the latest
	// MaxFailures windows after its last failure, a sending bucket one hour
	// after its last use.
	// Parallel attempts can overdraw a budget by fewer than
	// MaxConcurrentBinds failures (see Login), which take a window each to
	// refill.
	failureTTL := time.Duration(cfg.MaxFailures+cfg.MaxConcurrentBinds) * cfg.FailureWindow
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
	s.sharedHealthy.Store(true)
	return s
}

// Login checks one attempt. It returns the user and nil on success, or the
// reply for the client: policy.AuthFailed (535 5.7.8: the directory said
// no, or the credentials were refused unseen), policy.AuthTempFailed (454
// 4.7.0: the directory could not tell, was too busy, or holds several
// entries for the name), policy.AuthThrottledUser (454 4.7.0) or
// policy.AuthThrottledIP (421 4.7.0 — the caller disconnects after a 421).
//
// In order: the client address's and the user name's failure budgets (no
// directory request when either is spent; the name by its NameKey, and the
// entry the directory named for it before); the credentials' shape (empty
// password, NUL, too long: 535 without a bind); a bind slot; the budgets
// again (failures that landed while this attempt waited); the directory's
// search; the budget of the entry found, whatever spelling found it (spent:
// 454 without a bind); the bind. Only a refused password (and credentials
// refused unseen) counts as a failure: the directory's trouble is not the
// client's, and an attempt in flight is not a failure either.
//
// Each outcome is one line on log (the session's logger, which names the
// session and client; nil: the service's own, with the address), a refusal
// with its reply.
func (s *Service) Login(ctx context.Context, log *slog.Logger, ip netip.Addr, user, password string) (User, *policy.Reply) {
	log = s.attemptLog(log, ip, user)
	name := NameKey(user)

	r, why, reason := s.firstLook(ctx, ip, name, user, password)
	if r != nil {
		log.Info("auth refused", "outcome", "throttled", "reason", why, "reply", r.String())
		return User{}, r
	}
	if reason != "" {
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
	// The slot is given back only once the outcome is counted: at most
	// MaxConcurrentBinds attempts are between their last look at the
	// budgets and their failure being counted, which bounds how far
	// parallel attempts can overdraw a budget (the README).
	defer func() { <-s.binds }()

	r, why = s.lookAgain(ctx, ip, name)
	if r != nil {
		log.Info("auth refused", "outcome", "throttled", "reason", why, "reply", r.String())
		return User{}, r
	}

	res := s.dir.AuthenticateIf(ctx, user, password, func(dn string) bool {
		dn = strings.ToLower(dn)
		if s.cfg.Shared != nil {
			s.aliases.Add(name, dn)
			return s.sharedMayTry(ctx, "dn:"+dn)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		s.aliases.Add(name, dn)
		return s.mayTry(s.users, "dn:"+dn, s.cfg.Now())
	})

	switch res.Outcome {
	case lookup.AuthValid:
		s.succeeded(ctx, name, res.DN)
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
		s.failed(ctx, ip, name, res.DN)
		log.Info("auth failed", "outcome", "invalid", "dn", res.DN, "reason", res.Reason, "reply", policy.AuthFailed.String())
		return User{}, policy.AuthFailed
	case lookup.AuthNotTried:
		log.Info("auth refused", "outcome", "throttled", "dn", res.DN, "reason", reasonUser, "reply", policy.AuthThrottledUser.String())
		return User{}, policy.AuthThrottledUser
	}
	if res.Ambiguous {
		// Not the user's doing, and not passing: the directory's admin
		// must mend it.
		log.Error("auth failed", "outcome", "temporary", "reason", res.Reason, "reply", policy.AuthTempFailed.String())
		return User{}, policy.AuthTempFailed
	}
	log.Warn("auth failed", "outcome", "temporary", "dn", res.DN, "reason", res.Reason, "reply", policy.AuthTempFailed.String())
	return User{}, policy.AuthTempFailed
}

// attemptLog is the logger of one attempt: log (the session's, which names
// the session and the client) or, when nil, the service's own with the
// client address; with the user name either way.
func (s *Service) attemptLog(log *slog.Logger, ip netip.Addr, user string) *slog.Logger {
	if log == nil {
		return s.log.With("user", logName(user), "ip", ip.String())
	}
	return log.With("user", logName(user))
}

// firstLook is Login's first step: the budgets of the client address and
// the name, and the credentials refused unseen (counted as failures).
// In memory, both are one critical section: parallel attempts cannot get
// past a budget that they spend.
func (s *Service) firstLook(ctx context.Context, ip netip.Addr, name, user, password string) (*policy.Reply, string, string) {
	if s.cfg.Shared != nil {
		if r, why := s.lookAgain(ctx, ip, name); r != nil {
			return r, why, ""
		}
		reason := refuseUnseen(user, password)
		if reason != "" {
			s.sharedFailed(ctx, ip, name, "")
		}
		return nil, "", reason
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r, why := s.throttled(ip, name)
	reason := ""
	if r == nil {
		if reason = refuseUnseen(user, password); reason != "" {
			s.failedLocked(ip, name, "")
		}
	}
	return r, why, reason
}

// lookAgain is throttled, in memory or on the shared budgets.
func (s *Service) lookAgain(ctx context.Context, ip netip.Addr, name string) (*policy.Reply, string) {
	if s.cfg.Shared != nil {
		switch spent, user := s.sharedThrottled(ctx, ip, name); {
		case spent && user:
			return policy.AuthThrottledUser, reasonUser
		case spent:
			return policy.AuthThrottledIP, reasonIP
		}
		return nil, ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.throttled(ip, name)
}

// The reasons logged for a throttled attempt.
const (
	reasonIP   = "too many failures from this address"
	reasonUser = "too many failures for this user"
)

// throttled returns the reply for an attempt whose client address or user
// name (or the entry the name is known to mean) has no failure left in its
// budget, and why; nil when the attempt may go on. The caller holds s.mu.
func (s *Service) throttled(ip netip.Addr, name string) (*policy.Reply, string) {
	now := s.cfg.Now()
	if !s.mayTry(s.ips, ipKey(ip), now) {
		return policy.AuthThrottledIP, reasonIP
	}
	if !s.mayTry(s.users, "name:"+name, now) {
		return policy.AuthThrottledUser, reasonUser
	}
	if dn, ok := s.aliases.Get(name); ok && !s.mayTry(s.users, "dn:"+dn, now) {
		return policy.AuthThrottledUser, reasonUser
	}
	return nil, ""
}

// ExchangeFailed is the reply for an error of Mechanism.Next, like
// ExchangeReply, with the attempt logged with the reply (on log, the
// session's logger, as Login); an ErrAuthzid (a credential refused, not a
// syntax error) also counts as a failed login for the client address and
// the user name.
func (s *Service) ExchangeFailed(log *slog.Logger, ip netip.Addr, m Mechanism, err error) *policy.Reply {
	user, _ := m.Credentials()
	r := ExchangeReply(err)
	s.attemptLog(log, ip, user).Info("auth failed", "outcome", "invalid", "reason", err.Error(), "reply", r.String())
	if errors.Is(err, ErrAuthzid) {
		s.failed(context.Background(), ip, NameKey(user), "")
	}
	return r
}

// NameKey is the throttle key of a user name as typed in AUTH: lower-cased,
// with leading and trailing white space removed and each run of white
// space inside made one space, cut at MaxUserBytes. These are spellings the
// directory's matching rules (caseIgnoreMatch for uid, caseIgnoreIA5Match
// for mail, with RFC 4518's insignificant space handling) take for the same
// value, so they surely name the same entry. An address is not mapped to
// its local part: whether alice@dom and alice are one entry is the
// directory's to say, and once it has said (the search before the bind),
// the entry's own budget applies to every name that found it.
func NameKey(user string) string {
	k := strings.ToLower(strings.Join(strings.Fields(user), " "))
	if len(k) > MaxUserBytes {
		k = k[:MaxUserBytes]
	}
	return k
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
