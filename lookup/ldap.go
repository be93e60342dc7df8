package lookup

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-ldap/ldap/v3"
)

// LDAP defaults, used where LDAPConfig leaves a field at its zero value.
const (
	DefaultLDAPAccountFilter = "(|(mail=%s)(mailAlternateAddress=%s))"
	DefaultLDAPTimeout       = 3 * time.Second
	DefaultLDAPPoolSize      = 4
	DefaultLDAPTagSeparator  = "+"
	DefaultLDAPAuthFilter    = "(|(uid=%s)(mail=%s))"

	// MaxAuthPasswordBytes is the longest password Authenticate sends in a
	// bind; a longer one is refused without a bind.
	MaxAuthPasswordBytes = 1024

	// ldapSizeLimit bounds the entries one account search may return: the
	// recipient's entries (normally one) and the canary's. More means a
	// broken directory; slapd then answers sizeLimitExceeded.
	ldapSizeLimit = 16
	// ldapCacheMax bounds the positive cache.
	ldapCacheMax = 10000
)

// DefaultLDAPAddressAttributes are the attributes that hold a user's
// addresses, by default.
var DefaultLDAPAddressAttributes = []string{"mail", "mailAlternateAddress"}

// LDAPConfig configures a Directory. The names follow the ldap section of
// sekisho's config (DESIGN.md §7).
type LDAPConfig struct {
	// URLs are the directory servers (ldap://, ldaps://, ldapi://), tried in
	// order; the one that last worked is tried first. At least one.
	URLs []string
	// BaseDN is where accounts are searched (whole subtree). Required.
	BaseDN string
	// BindDN and BindPassword are the service account the pooled connections
	// bind as. An empty BindDN means anonymous searches.
	BindDN, BindPassword string
	// AccountFilter is an RFC 4515 filter in which every %s is replaced by the
	// escaped address; each %s must be a whole equality assertion value,
	// "(attr=%s)", so that returned entries can be matched back to the address
	// by that attribute. Default DefaultLDAPAccountFilter.
	AccountFilter string
	// AuthFilter finds a user's entry by the name typed in SMTP AUTH (a uid
	// or an address), with the same rules as AccountFilter: every %s is
	// replaced by the escaped name and must be a whole equality value.
	// Default DefaultLDAPAuthFilter.
	AuthFilter string
	// AddressAttributes are the attributes whose values are a user's
	// addresses (AuthResult.Addresses). Default DefaultLDAPAddressAttributes.
	AddressAttributes []string
	// Canary is an address whose entry must always exist. Required: without
	// it "not found" could not be told from "directory incomplete".
	Canary string
	// Timeout bounds one Account or Authenticate call as a whole: getting a
	// connection (dial and bind included) and the search or bind. Default
	// DefaultLDAPTimeout.
	Timeout time.Duration
	// PoolSize is the number of service connections (and so of concurrent
	// searches). Default DefaultLDAPPoolSize.
	PoolSize int
	// TagSeparator is the set of characters that start an address extension
	// (like Postfix's recipient_delimiter): with "+", user+tag@dom is looked
	// up as user@dom. Default DefaultLDAPTagSeparator; see NoTags.
	TagSeparator string
	// NoTags turns extension stripping off: addresses are looked up as given.
	NoTags bool
	// PositiveCacheTTL is how long a found account is remembered. 0 disables
	// the cache. Negative answers and could-not-tell are never cached.
	PositiveCacheTTL time.Duration
}

// AccountOutcome is the answer to "does this address have an account?".
// The zero value is AccountCouldNotTell.
type AccountOutcome int

// The account outcomes.
const (
	// AccountCouldNotTell: no certain answer (directory unreachable, busy,
	// timed out, an LDAP error, or the canary missing). Never a reason to
	// reject mail.
	AccountCouldNotTell AccountOutcome = iota
	// AccountFound: an entry has the address.
	AccountFound
	// AccountNotFound: no entry has the address, and the canary's entry was
	// returned by the same search, so the directory was complete.
	AccountNotFound
)

func (o AccountOutcome) String() string {
	switch o {
	case AccountFound:
		return "found"
	case AccountNotFound:
		return "not found"
	}
	return "could not tell"
}

// AccountResult is the result of Directory.Account.
type AccountResult struct {
	Outcome AccountOutcome
	// Reason says why, for the log line ("directory incomplete: canary
	// missing", "ldap://ldap1:389: connection refused", ...).
	Reason string
	// Address is the address looked up (extension removed).
	Address string
	// DN is the entry found (AccountFound only).
	DN string
	// Cached is true when the answer came from the positive cache.
	Cached bool
	// CanaryMissing is true when the directory answered but the canary's
	// entry was not among the results: the directory is incomplete (a
	// replica being rebuilt, a wrong base DN), as opposed to unreachable.
	CanaryMissing bool
}

// AuthOutcome is the answer to "are these credentials valid?". The zero
// value is AuthCouldNotTell.
type AuthOutcome int

// The authentication outcomes.
const (
	// AuthCouldNotTell: the directory could not be asked or gave no certain
	// answer. The client should try again later (SMTP 454).
	AuthCouldNotTell AuthOutcome = iota
	// AuthValid: the user's entry accepted the password (bind succeeded).
	AuthValid
	// AuthInvalid: invalid credentials — an empty password, no entry for
	// the user (with the canary present), or LDAP result 49.
	AuthInvalid
	// AuthNotTried: the search found the user's one entry, and the
	// caller's mayBind (AuthenticateIf) refused it: no bind was sent.
	AuthNotTried
)

func (o AuthOutcome) String() string {
	switch o {
	case AuthValid:
		return "valid"
	case AuthInvalid:
		return "invalid"
	case AuthNotTried:
		return "not tried"
	}
	return "could not tell"
}

// AuthResult is the result of Directory.Authenticate.
type AuthResult struct {
	Outcome AuthOutcome
	Reason  string
	// DN is the entry the user was matched to (when one was).
	DN string
	// Ambiguous is set when several entries matched the user
	// (AuthCouldNotTell): a fault of the directory, not of the user.
	Ambiguous bool
	// Addresses are the values of the address attributes of the user's
	// entry, as the directory has them, in the order of AddressAttributes
	// (AuthValid only).
	Addresses []string
}

// Directory asks the LDAP directory about accounts and credentials. It is
// safe for concurrent use. Connections are made on demand: a directory that
// is down when NewDirectory runs only makes lookups answer could-not-tell.
type Directory struct {
	cfg        LDAPConfig
	attrs      []string // the attributes the account filter asserts on
	attrSet    map[string]bool
	authAttrs  []string        // the attributes of Authenticate's search
	authSet    map[string]bool // the attributes the auth filter asserts on
	pool       *ldapPool
	cache      *ldapCache
	canaryNorm string
	observe    ObserveFunc // Observe; nil observes nothing
}

// NewDirectory checks cfg, applies the defaults and returns a Directory. It
// does not connect.
func NewDirectory(cfg LDAPConfig) (*Directory, error) {
	if len(cfg.URLs) == 0 {
		return nil, errors.New("ldap: no urls")
	}
	for _, u := range cfg.URLs {
		pu, err := url.Parse(u)
		if err != nil || (pu.Scheme != "ldap" && pu.Scheme != "ldaps" && pu.Scheme != "ldapi") {
			return nil, fmt.Errorf("ldap: url %q: want ldap://, ldaps:// or ldapi://host[:port]", u)
		}
	}
	if cfg.BaseDN == "" {
		return nil, errors.New("ldap: base_dn is empty")
	}
	if _, err := ldap.ParseDN(cfg.BaseDN); err != nil {
		return nil, fmt.Errorf("ldap: base_dn %q: %v", cfg.BaseDN, err)
	}
	if cfg.BindDN != "" && cfg.BindPassword == "" {
		return nil, errors.New("ldap: bind_dn without a password (an empty password would be an unauthenticated bind)")
	}
	if cfg.Canary == "" {
		return nil, errors.New("ldap: canary is empty: without it a missing entry cannot be told from an incomplete directory")
	}
	if cfg.AccountFilter == "" {
		cfg.AccountFilter = DefaultLDAPAccountFilter
	}
	attrs, err := ldapFilterAttributes("account_filter", cfg.AccountFilter)
	if err != nil {
		return nil, err
	}
	if cfg.AuthFilter == "" {
		cfg.AuthFilter = DefaultLDAPAuthFilter
	}
	authFilterAttrs, err := ldapFilterAttributes("auth_filter", cfg.AuthFilter)
	if err != nil {
		return nil, err
	}
	if len(cfg.AddressAttributes) == 0 {
		cfg.AddressAttributes = DefaultLDAPAddressAttributes
	}
	cfg.AddressAttributes = slices.Clone(cfg.AddressAttributes)
	for _, a := range cfg.AddressAttributes {
		if a == "" || strings.ContainsAny(a, "()&|!=~<>:*\\,; ") {
			return nil, fmt.Errorf("ldap: address_attributes: %q is not an attribute name", a)
		}
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultLDAPTimeout
	}
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = DefaultLDAPPoolSize
	}
	if cfg.TagSeparator == "" {
		cfg.TagSeparator = DefaultLDAPTagSeparator
	}
	if cfg.PositiveCacheTTL < 0 {
		cfg.PositiveCacheTTL = 0
	}
	d := &Directory{
		cfg:        cfg,
		attrs:      attrs,
		attrSet:    map[string]bool{},
		pool:       newLDAPPool(cfg),
		cache:      newLDAPCache(ldapCacheMax),
		canaryNorm: strings.ToLower(cfg.Canary),
	}
	for _, a := range attrs {
		d.attrSet[strings.ToLower(a)] = true
	}
	d.authSet = map[string]bool{}
	for _, a := range authFilterAttrs {
		d.authSet[strings.ToLower(a)] = true
	}
	seen := map[string]bool{}
	for _, a := range slices.Concat(authFilterAttrs, attrs, cfg.AddressAttributes) {
		if !seen[strings.ToLower(a)] {
			seen[strings.ToLower(a)] = true
			d.authAttrs = append(d.authAttrs, a)
		}
	}
	return d, nil
}

// Close closes the pooled connections. Lookups after Close answer
// could-not-tell.
func (d *Directory) Close() error {
	d.pool.close()
	return nil
}

// Account tells whether addr has an account, with ONE search:
//
//	(|(<AccountFilter for addr>)(<AccountFilter for the canary>))
//
// every value escaped (RFC 4515). The entries returned are matched back to
// the address and to the canary by the values of the filter's attributes,
// case-insensitively. The canary missing, or any error, is could-not-tell;
// only a complete answer without the address is not-found. An extension
// (user+tag@dom) is removed first. The call returns within the configured
// Timeout (or ctx's deadline if sooner).
func (d *Directory) Account(ctx context.Context, addr string) AccountResult {
	tr := traceFrom(ctx)
	if tr == nil && d.observe == nil {
		return d.account(ctx, addr)
	}
	start := time.Now()
	res := d.account(ctx, addr)
	if d.observe != nil && !res.Cached {
		d.observe("ldap", outcomeLabel(res.Outcome.String()), time.Since(start))
	}
	if tr == nil {
		return res
	}
	tr(TraceEvent{Kind: "ldap", Query: "account " + addr + " (with canary " + d.cfg.Canary + ")",
		Answer: res.Outcome.String() + " — " + res.Reason, Took: time.Since(start)})
	return res
}

func (d *Directory) account(ctx context.Context, addr string) AccountResult {
	addr = d.stripTag(addr)
	key := strings.ToLower(addr)
	if d.cfg.PositiveCacheTTL > 0 {
		if dn, ok := d.cache.get(key, time.Now()); ok {
			return AccountResult{Outcome: AccountFound, Address: addr, DN: dn, Cached: true, Reason: "found (cached)"}
		}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	res := AccountResult{Address: addr}
	m, err := d.search(ctx, addr)
	if err != nil && !(m.recipientDN != "" && ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded)) {
		res.Reason = "ldap: " + err.Error()
		return res
	}
	switch {
	case !m.canarySeen:
		res.Reason = "directory incomplete: canary missing (" + d.cfg.Canary + ")"
		res.CanaryMissing = true
	case m.recipientDN != "":
		res.Outcome, res.DN = AccountFound, m.recipientDN
		res.Reason = "found " + m.recipientDN
		if m.recipientEntries > 1 {
			res.Reason = fmt.Sprintf("found %d entries, first %s", m.recipientEntries, m.recipientDN)
		}
		if d.cfg.PositiveCacheTTL > 0 {
			d.cache.put(key, m.recipientDN, time.Now().Add(d.cfg.PositiveCacheTTL))
		}
	case m.unmatchedDN != "":
		// The server says an entry matched, but not by the values we
		// asked for: we cannot say it is not the recipient.
		res.Reason = "entry " + m.unmatchedDN + " matched the filter but neither the address nor the canary"
	default:
		res.Outcome = AccountNotFound
		res.Reason = "no entry for " + addr + " (canary present)"
	}
	return res
}

// Authenticate checks a user's password. The user is the name typed in
// SMTP AUTH, a uid or an address, taken as it is (no extension stripping).
// ONE search on a service connection asks for the user and the canary
// together,
//
//	(|(<AuthFilter for user>)(<AccountFilter for the canary>))
//
// every value escaped (RFC 4515), and reads the entries' address attributes.
// Then:
//
//   - several entries for the user: AuthCouldNotTell with Ambiguous set,
//     and no bind (whose password would it be?), whether or not the canary
//     came back: two entries answering to one login name is a fault of the
//     directory, which its admin must mend, not a wrong password;
//   - the canary missing: AuthCouldNotTell;
//   - no entry for the user: AuthInvalid;
//   - one entry: a simple bind as that entry on a separate, fresh
//     connection (never a pooled one). Success is AuthValid with the entry's
//     addresses; LDAP result 49 (invalidCredentials) is AuthInvalid;
//     anything else is AuthCouldNotTell.
//
// Every entry returned that is not recognised as the canary's (by the
// values of AccountFilter's attributes) counts as the user's: the server's
// matching rules chose it. An empty user or password, a NUL in either, or a
// password over MaxAuthPasswordBytes is AuthInvalid without any request: a
// bind with an empty password is an unauthenticated bind, which "succeeds"
// (RFC 4513 §5.1.2). A search or connection failure, a timeout or a busy
// pool is AuthCouldNotTell.
func (d *Directory) Authenticate(ctx context.Context, user, password string) AuthResult {
	return d.AuthenticateIf(ctx, user, password, nil)
}

// AuthenticateIf is Authenticate with mayBind asked, when the search has
// found the user's one entry, whether to bind as it: false ends the attempt
// as AuthNotTried (with the DN), before any bind. It lets the caller keep a
// failure budget per entry, whatever spelling of the name found the entry
// (the directory's matching rules ignore case and surrounding spaces). A
// nil mayBind always binds.
func (d *Directory) AuthenticateIf(ctx context.Context, user, password string, mayBind func(dn string) bool) AuthResult {
	switch {
	case user == "":
		return AuthResult{Outcome: AuthInvalid, Reason: "empty user name refused"}
	case password == "":
		return AuthResult{Outcome: AuthInvalid, Reason: "empty password refused"}
	case strings.IndexByte(user, 0) >= 0:
		return AuthResult{Outcome: AuthInvalid, Reason: "NUL in user name refused"}
	case strings.IndexByte(password, 0) >= 0:
		return AuthResult{Outcome: AuthInvalid, Reason: "NUL in password refused"}
	case len(password) > MaxAuthPasswordBytes:
		return AuthResult{Outcome: AuthInvalid, Reason: fmt.Sprintf("password over %d bytes refused", MaxAuthPasswordBytes)}
	}
	ctx, cancel := context.WithTimeout(ctx, d.cfg.Timeout)
	defer cancel()
	req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		ldapSizeLimit, ldapTimeLimit(ctx), false, d.authFilterFor(user), d.authAttrs, nil)
	res, err := d.searchRequest(ctx, req)
	var m authMatch
	if res != nil {
		m = d.matchAuth(res.Entries, user)
	}
	switch {
	case len(m.users) > 1 && (err == nil || ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded)):
		return AuthResult{Ambiguous: true, Reason: fmt.Sprintf("%d entries match %s: the directory is ambiguous, no bind", len(m.users), user)}
	case err != nil:
		return AuthResult{Reason: "ldap: " + err.Error()}
	case !m.canarySeen:
		return AuthResult{Reason: "directory incomplete: canary missing (" + d.cfg.Canary + ")"}
	case len(m.users) == 0:
		return AuthResult{Outcome: AuthInvalid, Reason: "no entry for " + user + " (canary present)"}
	}
	entry := m.users[0]
	dn := entry.DN
	if mayBind != nil && !mayBind(dn) {
		return AuthResult{Outcome: AuthNotTried, DN: dn, Reason: "no bind as " + dn + ": refused by the caller"}
	}
	conn, err := d.pool.dialBind(ctx, dn, password)
	if err != nil {
		if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
			return AuthResult{Outcome: AuthInvalid, DN: dn, Reason: "invalid credentials for " + dn}
		}
		return AuthResult{DN: dn, Reason: "ldap bind: " + err.Error()}
	}
	go conn.Close()
	return AuthResult{Outcome: AuthValid, DN: dn, Addresses: d.addresses(entry), Reason: "bind as " + dn + " succeeded"}
}

// authMatch is what one Authenticate search found.
type authMatch struct {
	canarySeen bool
	users      []*ldap.Entry
}

// matchAuth sorts the entries of an Authenticate search: the canary's
// (recognised by AccountFilter's attributes) and the user's (every other
// entry, and the canary's own if its auth attributes name the user).
func (d *Directory) matchAuth(entries []*ldap.Entry, user string) authMatch {
	var m authMatch
	for _, e := range entries {
		isUser, isCanary := false, false
		for _, a := range e.Attributes {
			name, _, _ := strings.Cut(a.Name, ";")
			name = strings.ToLower(name)
			for _, v := range a.Values {
				if d.attrSet[name] && strings.EqualFold(v, d.cfg.Canary) {
					isCanary = true
				}
				if d.authSet[name] && strings.EqualFold(v, user) {
					isUser = true
				}
			}
		}
		if isCanary {
			m.canarySeen = true
		}
		if isUser || !isCanary {
			m.users = append(m.users, e)
		}
	}
	return m
}

// addresses returns the values of the address attributes of e, each once,
// in the order of AddressAttributes (the primary mail first, by default),
// each attribute's values in the server's order.
func (d *Directory) addresses(e *ldap.Entry) []string {
	var out []string
	for _, want := range d.cfg.AddressAttributes {
		for _, a := range e.Attributes {
			if name, _, _ := strings.Cut(a.Name, ";"); !strings.EqualFold(name, want) {
				continue
			}
			for _, v := range a.Values {
				if v != "" && !slices.Contains(out, v) {
					out = append(out, v)
				}
			}
		}
	}
	return out
}

// authFilterFor builds Authenticate's one search filter for user and the
// canary.
func (d *Directory) authFilterFor(user string) string {
	return "(|" + strings.ReplaceAll(d.cfg.AuthFilter, "%s", ldap.EscapeFilter(user)) +
		strings.ReplaceAll(d.cfg.AccountFilter, "%s", ldap.EscapeFilter(d.cfg.Canary)) + ")"
}

// stripTag removes an address extension: user+tag@dom → user@dom. A local
// part that would become empty is left alone.
func (d *Directory) stripTag(addr string) string {
	if d.cfg.NoTags {
		return addr
	}
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 {
		return addr
	}
	local := addr[:at]
	if i := strings.IndexAny(local, d.cfg.TagSeparator); i > 0 {
		return local[:i] + addr[at:]
	}
	return addr
}

// ldapMatch is what one account search found.
type ldapMatch struct {
	canarySeen       bool
	recipientDN      string // the first entry whose values name the address
	recipientEntries int
	unmatchedDN      string // an entry that matched neither by our values
}

// filterFor builds the one search filter for addr and the canary.
func (d *Directory) filterFor(addr string) string {
	fill := func(v string) string {
		return strings.ReplaceAll(d.cfg.AccountFilter, "%s", ldap.EscapeFilter(v))
	}
	return "(|" + fill(addr) + fill(d.cfg.Canary) + ")"
}

// search runs the account search for addr on a pooled service connection.
func (d *Directory) search(ctx context.Context, addr string) (ldapMatch, error) {
	req := ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases,
		ldapSizeLimit, ldapTimeLimit(ctx), false, d.filterFor(addr), d.attrs, nil)
	var m ldapMatch
	res, err := d.searchRequest(ctx, req)
	if res != nil {
		m = d.match(res.Entries, addr)
	}
	return m, err
}

// searchRequest runs req on a pooled service connection. A stale pooled
// connection (the server restarted since it was used) is replaced by a
// fresh one and the search tried once more, if time allows.
func (d *Directory) searchRequest(ctx context.Context, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	for attempt := 0; ; attempt++ {
		conn, reused, err := d.pool.get(ctx, attempt > 0)
		if err != nil {
			return nil, err
		}
		started := time.Now()
		res, err := ldapSearch(ctx, conn, req)
		d.pool.put(conn, err == nil || ldapIsResultError(err))
		if err != nil && reused && attempt == 0 && !ldapIsResultError(err) && ctx.Err() == nil {
			// Retry only a fast failure: a stale connection fails at once,
			// a hung one has used the time up.
			if dl, ok := ctx.Deadline(); ok && time.Until(dl) > time.Since(started) && time.Since(started) < d.cfg.Timeout/4 {
				continue
			}
		}
		return res, err
	}
}

// match sorts the returned entries into recipient, canary and neither.
func (d *Directory) match(entries []*ldap.Entry, addr string) ldapMatch {
	var m ldapMatch
	for _, e := range entries {
		isRecipient, isCanary := false, false
		for _, a := range e.Attributes {
			name, _, _ := strings.Cut(a.Name, ";")
			if !d.attrSet[strings.ToLower(name)] {
				continue
			}
			for _, v := range a.Values {
				if strings.EqualFold(v, addr) {
					isRecipient = true
				}
				if strings.EqualFold(v, d.cfg.Canary) {
					isCanary = true
				}
			}
		}
		if isRecipient {
			m.recipientEntries++
			if m.recipientDN == "" {
				m.recipientDN = e.DN
			}
		}
		if isCanary {
			m.canarySeen = true
		}
		if !isRecipient && !isCanary && m.unmatchedDN == "" {
			m.unmatchedDN = e.DN
		}
	}
	return m
}

// ldapSearch runs req on conn within ctx: the request timeout is what is
// left of ctx's deadline, and cancelling ctx closes the connection, which
// ends the search with an error.
func ldapSearch(ctx context.Context, conn *ldap.Conn, req *ldap.SearchRequest) (*ldap.SearchResult, error) {
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, ctx.Err()
		}
		conn.SetTimeout(left)
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	res, err := conn.Search(req)
	if !stop() {
		// ctx ended during the search: whatever came back is not trusted.
		if err == nil {
			err = ctx.Err()
		}
		return res, fmt.Errorf("%w (%v)", ctx.Err(), err)
	}
	return res, err
}

// ldapTimeLimit is the search's server-side time limit in whole seconds
// (at least 1), so that slapd gives up too.
func ldapTimeLimit(ctx context.Context) int {
	dl, ok := ctx.Deadline()
	if !ok {
		return 0
	}
	s := int((time.Until(dl) + time.Second - 1) / time.Second)
	return max(s, 1)
}

// ldapIsResultError reports whether err is an answer from the server (an
// LDAP result code) rather than a failure to get one: the connection that
// carried it is still good.
func ldapIsResultError(err error) bool {
	var le *ldap.Error
	if !errors.As(err, &le) {
		return false
	}
	// Codes from 200 up (ErrorNetwork...) are go-ldap's own, not the server's.
	return le.ResultCode < ldap.ErrorNetwork
}

// LDAPFilterAttributes returns the attributes a filter such as
// LDAPConfig.AuthFilter compares the name with ("(|(uid=%s)(mail=%s))" →
// uid, mail), or the error NewDirectory would give for it.
func LDAPFilterAttributes(filter string) ([]string, error) {
	return ldapFilterAttributes("filter", filter)
}

// ldapFilterAttributes returns the attributes a filter asserts on with "%s"
// ("(mail=%s)" → mail), and checks that the filter compiles.
func ldapFilterAttributes(key, filter string) ([]string, error) {
	if _, err := ldap.CompileFilter(strings.ReplaceAll(filter, "%s", "x")); err != nil {
		return nil, fmt.Errorf("ldap: %s %q: %v", key, filter, err)
	}
	var attrs []string
	seen := map[string]bool{}
	rest := filter
	for {
		i := strings.Index(rest, "=%s)")
		if i < 0 {
			break
		}
		j := strings.LastIndexByte(rest[:i], '(')
		name := rest[j+1 : i]
		if j < 0 || name == "" || strings.ContainsAny(name, "()&|!=~<>:*\\ ") {
			return nil, fmt.Errorf("ldap: %s %q: %%s must be a whole equality value, as in (mail=%%s)", key, filter)
		}
		if !seen[strings.ToLower(name)] {
			seen[strings.ToLower(name)] = true
			attrs = append(attrs, name)
		}
		rest = rest[i+len("=%s)"):]
	}
	if len(attrs) == 0 || strings.Count(filter, "%s") != strings.Count(filter, "=%s)") {
		return nil, fmt.Errorf("ldap: %s %q: every %%s must be a whole equality value, as in (mail=%%s)", key, filter)
	}
	return attrs, nil
}

// ldapCache remembers found accounts until their expiry.
type ldapCache struct {
	mu      sync.Mutex
	max     int
	entries map[string]ldapCacheEntry
}

type ldapCacheEntry struct {
	dn      string
	expires time.Time
}

func newLDAPCache(max int) *ldapCache {
	return &ldapCache{max: max, entries: map[string]ldapCacheEntry{}}
}

func (c *ldapCache) get(key string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok {
		return "", false
	}
	if !now.Before(e.expires) {
		delete(c.entries, key)
		return "", false
	}
	return e.dn, true
}

func (c *ldapCache) put(key, dn string, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		now := time.Now()
		for k, e := range c.entries {
			if !now.Before(e.expires) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= c.max {
			// Still full of live entries: start over rather than track
			// recency; the cache is an optimisation, not a store.
			clear(c.entries)
		}
	}
	c.entries[key] = ldapCacheEntry{dn: dn, expires: expires}
}
