package filters

// The execution order of the checks, by cost within a stage. This is the one
// place the order is defined (DESIGN.md §3): cheap, local checks before
// network lookups, and the account check before greylisting so that no
// greylist entry is made for a recipient who does not exist. SPF runs
// before greylisting (issue 19): greylisting keys a client that SPF
// authorised for the sender's domain on (domain, recipient), so it needs
// SPF's result, and a certain SPF fail is refused at the first attempt
// instead of after the delay. The cost: first attempts that greylisting
// defers now cost SPF's lookups (once per transaction, through the DNS
// cache; docs/checks-greylist.md). filters_test.go pins the order; a change
// here shows in review.
var order = []string{
	// stage connect: enforced by the listener itself (gateway/greetpause.go),
	// which holds the banner; it is listed to keep the whole order here.
	"greet_pause",
	// stage mail and rcpt: memory, then DNS, then LDAP, then SPF, then the store
	"dnsbl",    // looked up at connect, enforced at RCPT: a map read
	"domain",   // bad list (memory), then DNS
	"account",  // one LDAP search
	"spf",      // several DNS lookups, once per transaction; greylisting keys on its result
	"greylist", // one store round trip
	// stage data
	"header",
	// stage message (the whole message, spooled, before any of it goes on)
	"dmarc", // DKIM key and DMARC record lookups, signature hashes over the body
}

func costOf(name string) (int, bool) {
	for i, n := range order {
		if n == name {
			return i, true
		}
	}
	return 0, false
}
