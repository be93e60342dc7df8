package autoconfig

import (
	"encoding/xml"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
)

// The paths Handler answers: Thunderbird's (on autoconfig.<domain>, and
// the well-known one on the domain itself) and Outlook's, in the two
// spellings clients use.
const (
	ThunderbirdPath          = "/mail/config-v1.1.xml"
	ThunderbirdWellKnownPath = "/.well-known/autoconfig/mail/config-v1.1.xml"
	OutlookPath              = "/autodiscover/autodiscover.xml"
	outlookPathCapitalized   = "/Autodiscover/Autodiscover.xml"
)

// Paths are every path Handler answers, to register on a mux.
var Paths = []string{ThunderbirdPath, ThunderbirdWellKnownPath, OutlookPath, outlookPathCapitalized}

// maxRequestBytes bounds an Outlook request body (a few hundred bytes).
const maxRequestBytes = 64 << 10

// Handler serves the client documents of the Settings in force. The zero
// value serves nothing (404) until Set.
type Handler struct {
	cur atomic.Pointer[Settings]
}

// NewHandler serves s.
func NewHandler(s *Settings) *Handler {
	h := &Handler{}
	h.Set(s)
	return h
}

// Set puts s in force for the requests that follow (a configuration
// reload); nil serves nothing.
func (h *Handler) Set(s *Settings) {
	if h != nil {
		h.cur.Store(s)
	}
}

// ServeHTTP answers the documents, 404 for a domain that is not local (or
// when nothing is served), 400 for an address that cannot be read. No
// error body repeats what the client sent.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := h.cur.Load()
	switch r.URL.Path {
	case ThunderbirdPath, ThunderbirdWellKnownPath:
		if !allow(w, r, http.MethodGet, http.MethodHead) {
			return
		}
		domain, err := thunderbirdDomain(r)
		if err == nil && !s.serves() {
			err = errNotServed
		}
		if err == nil {
			domain, err = s.localDomain(domain)
		}
		if err != nil {
			refuse(w, err)
			return
		}
		write(w, s.thunderbird(domain))
	case OutlookPath, outlookPathCapitalized:
		if !allow(w, r, http.MethodPost, http.MethodGet) {
			return
		}
		a, err := outlookAddress(w, r)
		if err == nil && !s.serves() {
			err = errNotServed
		}
		if err == nil {
			a.domain, err = s.localDomain(a.domain)
		}
		if err != nil {
			refuse(w, err)
			return
		}
		write(w, s.outlook(a))
	default:
		http.NotFound(w, r)
	}
}

// allow answers 405 to a method not in methods.
func allow(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// thunderbirdDomain is the domain Thunderbird asks about: that of
// ?emailaddress=, which it always sends; without it, that of the Host
// header (autoconfig.<domain> or the domain itself).
func thunderbirdDomain(r *http.Request) (string, error) {
	addr, ok, err := oneParameter(r.URL.RawQuery)
	if err != nil {
		return "", err
	}
	if ok {
		a, err := parseAddress(addr)
		return a.domain, err
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if len(host) > len("autoconfig.") && strings.EqualFold(host[:len("autoconfig.")], "autoconfig.") {
		host = host[len("autoconfig."):]
	}
	return host, nil
}

// oneParameter returns the emailaddress parameter of a query: there may be
// none (ok false) or one; two are malformed (which one would be meant?).
func oneParameter(rawQuery string) (string, bool, error) {
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return "", false, errMalformed
	}
	switch v := q["emailaddress"]; len(v) {
	case 0:
		return "", false, nil
	case 1:
		return v[0], true, nil
	}
	return "", false, errMalformed
}

// adRequest is Outlook's request: the address, and the schema of the
// answer it wants.
type adRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             []string `xml:"EMailAddress"`
		AcceptableResponseSchema string   `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

// outlookAddress reads the address of an Outlook request: the body of a
// POST, ?emailaddress= of a GET. A request for another schema than
// Outlook's (ActiveSync's mobilesync) is errNotLocal: there is no such
// configuration here.
func outlookAddress(w http.ResponseWriter, r *http.Request) (address, error) {
	if r.Method == http.MethodGet {
		addr, ok, err := oneParameter(r.URL.RawQuery)
		if err != nil || !ok {
			return address{}, errMalformed
		}
		return parseAddress(addr)
	}
	var req adRequest
	body := http.MaxBytesReader(w, r.Body, maxRequestBytes)
	if err := xml.NewDecoder(body).Decode(&req); err != nil {
		return address{}, errMalformed
	}
	if _, err := io.Copy(io.Discard, body); err != nil { // over the limit after the document
		return address{}, errMalformed
	}
	if len(req.Request.EMailAddress) != 1 {
		return address{}, errMalformed
	}
	if schema := strings.TrimSpace(req.Request.AcceptableResponseSchema); schema != "" && schema != adOutlookNS {
		return address{}, errNotLocal
	}
	return parseAddress(strings.TrimSpace(req.Request.EMailAddress[0]))
}

// refuse answers err with its status and a fixed text.
func refuse(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, errNotServed):
		// Says why to the admin who tries it with curl; it tells others
		// nothing the 404 does not.
		http.Error(w, "no mail configuration is served here: no incoming server (autoconfig.imap, autoconfig.pop3) or no submission listener is configured", http.StatusNotFound)
	case errors.Is(err, errNotLocal):
		http.Error(w, "no mail configuration here for this domain", http.StatusNotFound)
	default:
		http.Error(w, "the request names no valid mail address or domain", http.StatusBadRequest)
	}
}

func write(w http.ResponseWriter, doc []byte) {
	w.Header().Set("Content-Type", "application/xml; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.Write(doc)
}
