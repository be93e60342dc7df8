// Package auth is SMTP AUTH (RFC 4954) for the submission listeners
// (DESIGN.md §2): the SASL mechanisms PLAIN (RFC 4616) and LOGIN
// (draft-murchison-sasl-login), the check of a user's password by an LDAP
// bind through package lookup, the throttles that make guessing passwords
// slow, and the per-user sending limits that contain a compromised account.
//
// The gateway runs the exchange: it reads the client's lines, decodes them
// from base64 and hands them to a Mechanism; once the mechanism is done it
// calls Service.Login with the credentials and the client's address. Login
// answers with the User (name, entry, addresses) or with the reply for the
// client, which keeps sekisho's rule: a wrong password is a 535, but a
// directory that could not tell is a 454, never a 535.
//
// The counters (failures per client address and per user — the user's
// directory entry, whatever spelling of the name found it —, messages and
// recipients per user and hour) are kept in memory, in bounded maps whose
// entries expire: each gateway counts for itself, and a restart forgets.
// Only a refused password is a failure; an attempt in flight is not.
package auth
