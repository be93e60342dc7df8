package filters

// The greylisting check (DESIGN.md §3 row 6), on top of package
// greylist.
//
// At RCPT, in this order, the first that applies decides:
//
//	trusted client (trusted_networks)          continue, not greylisted
//	authenticated client (SMTP AUTH)           continue, not greylisted
//	client in Exempt (config exempt)           continue, not greylisted
//	recipient postmaster@ any domain           continue (RFC 5321 §4.5.1:
//	                                           postmaster must accept mail)
//	recipient on the whitelist                 continue
//	client IP/network on the whitelist         continue
//	client's verified name on the whitelist    continue (only looked up if
//	                                           the whitelist has names)
//	an earlier recipient of the transaction    the same decision (below)
//	  had the store's decision
//	store: pass                                continue
//	store: defer                               451 4.7.1 with the seconds left
//	store error                                on_store_error: accept
//	                                           (continue, logged, counted) or
//	                                           tempfail (451 4.3.0)
//
// The triplet (greylist.Triplet): when the SPF check (which runs before
// greylisting, order.go) found the client authorised for the envelope
// sender's domain (result pass, identity mailfrom, by a mechanism other
// than "+all") and BySenderDomain is set, (SPF-validated sender domain, recipient), so that a big sender's
// retry from another address of its pool is a retry; otherwise (client
// network, sender, recipient).
//
// One decision per transaction: the first recipient that reaches the store
// decides for every later one (all held or none), so that a message to
// several campus users is never split into parts that arrive hours apart.
// The later recipients' triplets are still recorded, so that the retry of
// the whole transaction passes whole. Recipients the whitelist or
// postmaster exempt stay exempt; a store error is not shared.
//
// A store error is an incident: the first error logs once at Error level,
// every error is counted (StoreErrors), StoreHealthy is false until a store
// call succeeds again, which logs once at Info level. The store is asked
// again on every recipient, so one that comes back is used at once.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"blitiri.com.ar/go/spf"

	"sekisho/greylist"
	"sekisho/internal/mailaddr"
	"sekisho/policy"
	"sekisho/report"
)

// StoreErrorAction is what the greylist check does when the store cannot
// answer (config checks.greylist.on_store_error).
type StoreErrorAction int

// The actions on a store error.
const (
	// StoreErrorAccept lets the recipient pass un-greylisted (the default:
	// greylisting is a filter, not a gate that may close mail for hours).
	StoreErrorAccept StoreErrorAction = iota
	// StoreErrorTempfail defers the recipient with GreylistStoreUnavailable.
	StoreErrorTempfail
)

func (a StoreErrorAction) String() string {
	if a == StoreErrorTempfail {
		return "tempfail"
	}
	return "accept"
}

// ParseStoreErrorAction parses the config value: "accept" (or empty, the
// default) or "tempfail".
func ParseStoreErrorAction(s string) (StoreErrorAction, error) {
	switch s {
	case "", "accept":
		return StoreErrorAccept, nil
	case "tempfail":
		return StoreErrorTempfail, nil
	}
	return 0, fmt.Errorf("on_store_error must be accept or tempfail, not %q", s)
}

// ReverseNameFunc returns the client's verified (forward-confirmed) reverse
// DNS name, "" when it has none. An error means "could not tell"; the
// greylist then treats the client as not whitelisted by name, which delays
// (451) but never rejects. The gateway may answer from a lookup made at
// connect (tx.Conn).
type ReverseNameFunc func(ctx context.Context, tx *Transaction) (string, error)

// DefaultGreylistStoreTimeout bounds one store call when the caller's
// context allows more: a hung store must not hold every RCPT for the whole
// command timeout.
const DefaultGreylistStoreTimeout = 2 * time.Second

// GreylistOptions configures NewGreylist.
type GreylistOptions struct {
	Store    greylist.Store
	Policy   greylist.Policy        // zero: greylist.DefaultPolicy()
	Networks greylist.NetworkPrefix // zero: greylist.DefaultNetworkPrefix
	// OnStoreError is what to do when the store cannot answer.
	OnStoreError StoreErrorAction
	// Exempt are client networks never greylisted, besides the trusted
	// ones (config checks.greylist.exempt; the embedded defaults exempt
	// loopback, so that a first try on the machine itself is not held).
	Exempt []netip.Prefix
	// Whitelist is the path of the whitelist file; "" for none.
	Whitelist string
	// ReverseName gives the client's verified name for the name entries
	// of the whitelist; nil: name entries never match.
	ReverseName ReverseNameFunc
	// StoreTimeout bounds one store call; 0: DefaultGreylistStoreTimeout.
	StoreTimeout time.Duration
	// BySenderDomain greylists a client that SPF authorised for the
	// sender's domain on (domain, recipient) (config
	// checks.greylist.by_sender_domain).
	BySenderDomain bool
	// Logger receives incidents and reloads; nil: slog.Default().
	Logger *slog.Logger
}

// Greylist is the greylisting check. It is safe for concurrent use.
type Greylist struct {
	store        greylist.Store
	policy       greylist.Policy
	networks     greylist.NetworkPrefix
	onStoreError StoreErrorAction
	exempt       []netip.Prefix
	reverseName  ReverseNameFunc
	storeTimeout time.Duration
	byDomain     bool
	logger       *slog.Logger

	whitelist     atomic.Pointer[GreylistWhitelist]
	reloadMu      sync.Mutex
	whitelistPath string

	healthy     atomic.Bool
	storeErrors atomic.Uint64
	incidentMu  sync.Mutex // orders the down/up log lines of one incident
	downSince   time.Time  // guarded by incidentMu
	downErrors  uint64     // storeErrors when the incident began; incidentMu
}

var _ Check = (*Greylist)(nil)

// NewGreylist builds the check and loads the whitelist file, if any: an
// invalid file is an error at start-up.
func NewGreylist(opts GreylistOptions) (*Greylist, error) {
	if opts.Store == nil {
		return nil, errors.New("greylist: no store")
	}
	if opts.Policy == (greylist.Policy{}) {
		opts.Policy = greylist.DefaultPolicy()
	}
	if err := opts.Policy.Validate(); err != nil {
		return nil, err
	}
	if opts.Networks == (greylist.NetworkPrefix{}) {
		opts.Networks = greylist.DefaultNetworkPrefix
	}
	if err := opts.Networks.Validate(); err != nil {
		return nil, err
	}
	if opts.StoreTimeout <= 0 {
		opts.StoreTimeout = DefaultGreylistStoreTimeout
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	g := &Greylist{
		store:         opts.Store,
		policy:        opts.Policy,
		networks:      opts.Networks,
		onStoreError:  opts.OnStoreError,
		exempt:        opts.Exempt,
		reverseName:   opts.ReverseName,
		storeTimeout:  opts.StoreTimeout,
		byDomain:      opts.BySenderDomain,
		logger:        opts.Logger.With("check", "greylist"),
		whitelistPath: opts.Whitelist,
	}
	g.healthy.Store(true)
	g.whitelist.Store(&GreylistWhitelist{})
	if opts.Whitelist != "" {
		if err := g.Reload(); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// Name implements Check.
func (g *Greylist) Name() string { return "greylist" }

// Stage implements Check.
func (g *Greylist) Stage() Stage { return StageRcpt }

// Check implements Check: the store's check-and-set records the attempt.
func (g *Greylist) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	return g.check(ctx, tx, false)
}

// DryRun returns the same check with one difference: it asks the store with
// Peek, so it creates and updates no entry (for sekisho explain).
func (g *Greylist) DryRun() Check { return greylistDryRun{g} }

type greylistDryRun struct{ g *Greylist }

func (d greylistDryRun) Name() string { return d.g.Name() }
func (d greylistDryRun) Stage() Stage { return d.g.Stage() }
func (d greylistDryRun) Check(ctx context.Context, tx *Transaction) (Verdict, error) {
	return d.g.check(ctx, tx, true)
}

// Reload reads the whitelist file again. A file that does not parse is
// refused with an error naming file:line, and the list in force stays. With
// no whitelist configured it does nothing.
func (g *Greylist) Reload() error {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	if g.whitelistPath == "" {
		return nil
	}
	content, err := os.ReadFile(g.whitelistPath)
	if err == nil {
		var w *GreylistWhitelist
		if w, err = ParseGreylistWhitelist(g.whitelistPath, content); err == nil {
			g.whitelist.Store(w)
			g.logger.Info("greylist whitelist loaded", "file", g.whitelistPath,
				"clients", len(w.prefixes), "names", w.names.len(), "recipients", len(w.recipients)+w.rcptDoms.len())
			return nil
		}
	}
	err = fmt.Errorf("greylist whitelist refused, the previous list stays in force: %w", err)
	g.logger.Error("greylist whitelist not loaded", "file", g.whitelistPath, "err", err)
	return err
}

// Whitelist is the whitelist in force (empty when none is configured).
func (g *Greylist) Whitelist() *GreylistWhitelist { return g.whitelist.Load() }

// StoreHealthy reports whether the last store call succeeded.
func (g *Greylist) StoreHealthy() bool { return g.healthy.Load() }

// StoreErrors is the number of store calls that failed since start.
func (g *Greylist) StoreErrors() uint64 { return g.storeErrors.Load() }

func (g *Greylist) check(ctx context.Context, tx *Transaction, peek bool) (Verdict, error) {
	switch {
	case tx.Trusted:
		return skip("trusted client: not greylisted"), nil
	case tx.Authenticated != "":
		return skip("authenticated client: not greylisted"), nil
	case IsPostmaster(tx.Rcpt):
		return skip("recipient is postmaster (RFC 5321 §4.5.1): not greylisted"), nil
	case !tx.Client.IsValid():
		return skip("no client IP address (local connection): not greylisted"), nil
	}
	for _, p := range g.exempt {
		if p.Contains(tx.Client.Unmap().WithZone("")) {
			return skip("client in exempt network " + p.String() + ": not greylisted"), nil
		}
	}
	wl := g.whitelist.Load()
	if e, ok := wl.MatchRecipient(tx.Rcpt); ok {
		return skip("recipient whitelisted by " + e), nil
	}
	if e, ok := wl.MatchClient(tx.Client); ok {
		return skip("client whitelisted by " + e), nil
	}
	nameNote := ""
	if wl.HasNames() && g.reverseName != nil {
		name, err := g.reverseName(ctx, tx)
		switch {
		case err != nil:
			// Could not tell: the client is not known to be whitelisted,
			// so it is greylisted, which only delays.
			nameNote = fmt.Sprintf("; client name could not be verified (%v), name whitelist not applied", err)
		case name != "":
			if e, ok := wl.MatchName(name); ok {
				return skip("client name " + name + " whitelisted by " + e), nil
			}
		}
	}

	t := g.triplet(tx)
	shared, _ := tx.Values[greylistValueKey].(*greylistShared)
	if shared != nil && shared.first == t {
		shared = nil // the same recipient again: the store decides anew
	}
	sctx, cancel := context.WithTimeout(ctx, g.storeTimeout)
	defer cancel()
	var d greylist.Decision
	var err error
	if peek {
		d, err = g.store.Peek(sctx, t, g.policy)
	} else {
		d, err = g.store.Check(sctx, t, g.policy)
	}
	if err != nil {
		if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// The session is gone (canceled): not the store's fault.
			return Verdict{}, err
		}
		if shared != nil {
			// The transaction's decision stands; this recipient's
			// triplet is just not recorded.
			g.storeFailed(t, err)
			return shared.follow(t, " (its own triplet not recorded: store unavailable)"), nil
		}
		return g.storeFailed(t, err), nil
	}
	g.storeWorks()
	if !peek && !d.New && !d.AutoWhitelisted && (!d.Pass || d.Delayed > 0) {
		g.recordRetry(sctx, tx, t, d)
	}
	if shared != nil {
		return shared.follow(t, nameNote), nil
	}
	v := g.verdict(t, d, nameNote)
	if tx.Values == nil {
		tx.Values = map[string]any{}
	}
	tx.Values[greylistValueKey] = &greylistShared{first: t, verdict: v}
	return v, nil
}

// GreylistStatsKeep is how long the weekly greylisting stats are kept
// (sekisho greylist stats): five weeks.
const GreylistStatsKeep = 35 * 24 * time.Hour

// recordRetry records a retry of a greylisted triplet (held again, or its
// first pass with how long it was held) for `sekisho greylist stats`: by
// the sender's domain (the SPF-validated one of a domain triplet) and the
// client's address. An error is logged at Debug: the stats are not worth
// more than the mail.
func (g *Greylist) recordRetry(ctx context.Context, tx *Transaction, t greylist.Triplet, d greylist.Decision) {
	domain := t.Domain
	if domain == "" {
		if at := strings.LastIndexByte(t.Sender, '@'); at >= 0 {
			domain = mailaddr.Fold(t.Sender[at+1:])
		}
	}
	now := time.Now()
	err := g.store.AddRetry(ctx, greylist.Retry{
		Week: report.WeekName(now), Domain: domain, Client: tx.Client.Unmap().WithZone("").String(),
		Delay: d.Delayed, Until: now.Add(GreylistStatsKeep),
	})
	if err != nil {
		g.logger.Debug("greylist stats not recorded", "err", err)
	}
}

// greylistValueKey is the key of the transaction's greylisting decision
// in tx.Values.
const greylistValueKey = "greylist"

// greylistShared is the decision of a transaction's first recipient that
// reached the store, which every later recipient follows.
type greylistShared struct {
	first   greylist.Triplet
	verdict Verdict
}

// follow is the shared decision for a later recipient's triplet t.
func (s *greylistShared) follow(t greylist.Triplet, note string) Verdict {
	v := s.verdict
	if v.Action == Continue {
		v.Reason = fmt.Sprintf("triplet %s passes with the transaction (%s passed)%s", t, s.first, note)
	} else {
		v.Reason = fmt.Sprintf("triplet %s held with the transaction (%s greylisted)%s", t, s.first, note)
	}
	return v
}

// triplet is what tx is greylisted on: (SPF-validated sender domain,
// recipient) when the SPF check passed the envelope sender and
// BySenderDomain is set, else (client network, sender, recipient).
func (g *Greylist) triplet(tx *Transaction) greylist.Triplet {
	if g.byDomain && tx.From != "" {
		// A pass by "+all" authorises every host on the Internet: it
		// validates nothing, so the domain is not trusted to key on.
		if out, ok := SPFOutcomeOf(tx); ok && out.Result == spf.Pass && out.Identity == SPFMailFrom && out.Domain != "" && out.Mechanism != "all" {
			return greylist.NewDomainTriplet(out.Domain, tx.Rcpt)
		}
	}
	return greylist.NewTriplet(tx.Client, tx.From, tx.Rcpt, g.networks)
}

// verdict is the store's decision d for t as the check's verdict.
func (g *Greylist) verdict(t greylist.Triplet, d greylist.Decision, nameNote string) Verdict {
	switch {
	case d.Pass && d.AutoWhitelisted:
		if t.Domain != "" {
			return skip("SPF-validated sender domain " + t.Domain + " auto-whitelisted" + nameNote)
		}
		return skip("network " + t.Network.String() + " auto-whitelisted" + nameNote)
	case d.Pass:
		return skip("triplet " + t.String() + " passed greylisting" + nameNote)
	}
	secs := d.SecondsLeft()
	what := "known triplet"
	if d.New {
		what = "new triplet"
	}
	return Verdict{
		Action: Defer,
		Reply:  policy.GreylistDeferred.Withf("greylisted, please try again in %d seconds", secs),
		Reason: fmt.Sprintf("%s %s greylisted, %d s left%s", what, t, secs, nameNote),
	}
}

func skip(reason string) Verdict { return Verdict{Action: Continue, Reason: reason} }

// storeFailed counts the error, logs the start of an incident once, and
// gives the verdict on_store_error asks for.
func (g *Greylist) storeFailed(t greylist.Triplet, err error) Verdict {
	g.storeErrors.Add(1)
	if g.healthy.Load() {
		g.incidentMu.Lock()
		if g.healthy.Load() {
			g.downSince = time.Now()
			g.downErrors = g.storeErrors.Load() - 1
			g.healthy.Store(false)
			g.logger.Error("greylist store unavailable", "err", err, "on_store_error", g.onStoreError.String())
		}
		g.incidentMu.Unlock()
	}
	if g.onStoreError == StoreErrorTempfail {
		return Verdict{
			Action: Defer,
			Reply:  policy.GreylistStoreUnavailable,
			Reason: fmt.Sprintf("greylist store unavailable (%v): deferred by on_store_error tempfail", err),
		}
	}
	return skip(fmt.Sprintf("greylist store unavailable (%v): %s accepted un-greylisted by on_store_error accept", err, t))
}

// storeWorks ends an incident, logging it once.
func (g *Greylist) storeWorks() {
	if g.healthy.Load() {
		return
	}
	g.incidentMu.Lock()
	defer g.incidentMu.Unlock()
	if g.healthy.Load() {
		return
	}
	g.healthy.Store(true)
	g.logger.Info("greylist store available again",
		"down_for", time.Since(g.downSince).Round(time.Millisecond),
		"errors", g.storeErrors.Load()-g.downErrors)
}

// IsPostmaster reports whether rcpt is the postmaster of any domain (or the
// bare "postmaster" RFC 5321 §4.5.1 requires to work without a domain),
// case-insensitively. A quoted local part "postmaster" counts too.
func IsPostmaster(rcpt string) bool {
	local := rcpt
	if at := strings.LastIndexByte(rcpt, '@'); at >= 0 {
		local = rcpt[:at]
	}
	if len(local) >= 2 && local[0] == '"' && local[len(local)-1] == '"' {
		local = local[1 : len(local)-1]
	}
	return strings.EqualFold(local, "postmaster")
}

// GreylistWhitelist is a parsed whitelist file: clients (IP addresses,
// networks, verified reverse-DNS names) and recipients that are never
// greylisted. It is immutable once parsed.
//
// File format: one entry per line; '#' starts a comment (on its own line or
// after the entry); blank lines are ignored.
//
//	192.0.2.1             a client address
//	192.0.2.0/24          a client network (host bits are masked off)
//	2001:db8::/32
//	mx.example.net        a client whose verified reverse-DNS name is exactly this
//	.example.net          ... is example.net or any name below it
//	abuse@campus.example  a recipient
//	@campus.example       every recipient in the domain
//	@.campus.example      ... in the domain and its subdomains
//
// Names follow the rules of baddomains.txt (LDH, A-labels, the leading dot
// for subtrees). An invalid line refuses the whole file, with an error per
// line naming file:line.
type GreylistWhitelist struct {
	file       string
	prefixes   []whitelistPrefix
	names      whitelistNames    // client names
	recipients map[string]string // address → "file:line: entry"
	rcptDoms   whitelistNames    // @domain entries
}

type whitelistPrefix struct {
	prefix netip.Prefix
	where  string
}

// whitelistNames holds name entries, exact names and subtrees (leading
// dot, covering the name too), each with the "file:line: entry" it came
// from. The first entry of a name wins. build makes the matcher once the
// file is read.
type whitelistNames struct {
	entries []string          // as written, normalized: "x" or ".x"
	where   map[string]string // entry -> "file:line: entry"
	set     mailaddr.DomainSet
}

func (s *whitelistNames) add(e policy.BadDomainEntry, where string) {
	if s.where == nil {
		s.where = map[string]string{}
	}
	if _, dup := s.where[e.String()]; !dup {
		s.where[e.String()] = where
		s.entries = append(s.entries, e.String())
	}
}

func (s *whitelistNames) build() { s.set = mailaddr.NewDomainTree(s.entries) }

func (s *whitelistNames) len() int { return len(s.entries) }

// match finds the entry covering name: the exact entry, else the subtree
// entry of the name or of its nearest parent that has one.
func (s *whitelistNames) match(name string) (string, bool) {
	if e, ok := s.set.Match(name); ok {
		return s.where[e], true
	}
	return "", false
}

// GreylistWhitelistLineError is an invalid line of a whitelist file.
type GreylistWhitelistLineError struct {
	File string
	Line int
	Text string
	Err  error
}

func (e *GreylistWhitelistLineError) Error() string {
	return fmt.Sprintf("%s:%d: %q: %v", e.File, e.Line, e.Text, e.Err)
}

func (e *GreylistWhitelistLineError) Unwrap() error { return e.Err }

// ParseGreylistWhitelist parses a whitelist file's content; file names it in
// errors and in the matches the check logs.
func ParseGreylistWhitelist(file string, content []byte) (*GreylistWhitelist, error) {
	w := &GreylistWhitelist{file: file, recipients: map[string]string{}}
	var errs []error
	content = bytes.TrimPrefix(content, []byte{0xEF, 0xBB, 0xBF})
	for i, raw := range strings.Split(string(content), "\n") {
		text := raw
		if j := strings.IndexByte(text, '#'); j >= 0 {
			text = text[:j]
		}
		text = strings.TrimSpace(text)
		if text == "" {
			continue
		}
		where := fmt.Sprintf("%s:%d: %s", file, i+1, text)
		if err := w.add(text, where); err != nil {
			if len(errs) < 20 {
				errs = append(errs, &GreylistWhitelistLineError{File: file, Line: i + 1, Text: text, Err: err})
			}
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	w.names.build()
	w.rcptDoms.build()
	return w, nil
}

func (w *GreylistWhitelist) add(text, where string) error {
	if strings.ContainsAny(text, " \t") {
		return errors.New("more than one entry on the line (one per line)")
	}
	if at := strings.LastIndexByte(text, '@'); at >= 0 {
		local, domain := text[:at], text[at+1:]
		if local == "" {
			e, err := policy.ParseBadDomainEntry(domain)
			if err != nil {
				return fmt.Errorf("recipient domain: %w", err)
			}
			w.rcptDoms.add(e, where)
			return nil
		}
		if strings.HasPrefix(domain, ".") {
			return errors.New("a recipient address cannot have a leading-dot domain; use @.domain for every recipient of a subtree")
		}
		d, err := policy.ValidateDomain(domain)
		if err != nil {
			return fmt.Errorf("recipient domain: %w", err)
		}
		w.recipients[strings.ToLower(local)+"@"+d] = where
		return nil
	}
	if strings.Contains(text, "/") {
		p, err := netip.ParsePrefix(text)
		if err != nil {
			return fmt.Errorf("not a network in CIDR notation: %w", err)
		}
		w.prefixes = append(w.prefixes, whitelistPrefix{p.Masked(), where})
		return nil
	}
	if a, err := netip.ParseAddr(text); err == nil {
		a = a.Unmap()
		w.prefixes = append(w.prefixes, whitelistPrefix{netip.PrefixFrom(a, a.BitLen()), where})
		return nil
	}
	e, err := policy.ParseBadDomainEntry(text)
	if err != nil {
		return fmt.Errorf("neither an address, a network, a host name nor a recipient: %w", err)
	}
	w.names.add(e, where)
	return nil
}

// File is the file the whitelist was parsed from ("" for the empty list).
func (w *GreylistWhitelist) File() string { return w.file }

// Len is the number of entries.
func (w *GreylistWhitelist) Len() int {
	return len(w.prefixes) + w.names.len() + len(w.recipients) + w.rcptDoms.len()
}

// HasNames reports whether there are name entries, i.e. whether the client's
// reverse name is worth looking up.
func (w *GreylistWhitelist) HasNames() bool { return w.names.len() > 0 }

// MatchClient finds the address or network entry covering ip; the string is
// "file:line: entry".
func (w *GreylistWhitelist) MatchClient(ip netip.Addr) (string, bool) {
	ip = ip.Unmap().WithZone("")
	for _, p := range w.prefixes {
		if p.prefix.Contains(ip) {
			return p.where, true
		}
	}
	return "", false
}

// MatchName finds the name entry covering the client's verified name.
func (w *GreylistWhitelist) MatchName(name string) (string, bool) {
	return w.names.match(name)
}

// MatchRecipient finds the entry covering the recipient address.
func (w *GreylistWhitelist) MatchRecipient(rcpt string) (string, bool) {
	at := strings.LastIndexByte(rcpt, '@')
	if at < 0 {
		return "", false
	}
	if where, ok := w.recipients[strings.ToLower(rcpt[:at])+"@"+mailaddr.Fold(rcpt[at+1:])]; ok {
		return where, true
	}
	return w.rcptDoms.match(rcpt[at+1:])
}
