package history

// The /history page on the http listener: the same filters as `sekisho
// history`, as a form (GET, no JavaScript), the matching decisions newest
// first, each row linking the other rows of its session, and for each
// refusal a hint in an admin's words. Every address, HELO, reply and
// Message-ID is the client's choice: html/template escapes each in its
// context, and the Content-Security-Policy forbids any script.

import (
	"bytes"
	"context"
	"html/template"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Path is the page's path on the http listener.
const Path = "/history"

// PageHandler serves Path from search (newest first, as Search). Other
// methods than GET and HEAD are 405; a store that cannot be read is 503.
func PageHandler(search func(context.Context, Filter) ([]Record, error)) http.Handler {
	return pageHandler{search}
}

type pageHandler struct {
	search func(context.Context, Filter) ([]Record, error)
}

// hints say, for the check that refused or deferred, what happened and
// what the sender (or we) can do, for the admin who answers the user.
var hints = map[string]string{
	"greylist":    "Greylisted: a first attempt from an unknown server is deferred; a real mail server retries after a few minutes and gets through. Nothing to do but wait.",
	"greet_pause": "The client talked before our greeting, as spam software does. A real mail server waits; if this is one, its admin must fix it (or it can be exempted in checks.greet_pause.exempt).",
	"dnsbl":       "The sending server's address is on a blocklist (named in the reply). The sender's mail admin must have it delisted; meanwhile the sender can send from another provider.",
	"account":     "No such mailbox in the directory: the sender should check the address for a typo, or the user has left.",
	"domain":      "The domain of the address does not exist (or is on the bad-domain list): most often a typo in the address.",
	"spf":         "The sender's domain does not allow this server to send its mail (SPF fail): the sender must send through their own provider's server, or their admin fix the SPF record.",
	"dmarc":       "The message claims a From domain whose DMARC policy it fails: a forged sender, or a forwarder that breaks the signature.",
	"dkim":        "The DKIM signature could not be made or checked.",
	"header":      "The message's header breaks the mail format (RFC 5322; the rule is in the reply): the sending program must be fixed.",
	"relay":       "The recipient is not in our domains and the client may not relay through us: the sender used the wrong server, or it is a relay attempt.",
	"route":       "No route for the recipient's domain in our configuration.",
	"next_hop":    "Our internal mail server answered this (its reply is shown): for a 5xx, e.g., the mailbox does not exist there; for a 4xx it is busy and the sender's server retries.",
	"call_ahead":  "Our internal mail server did not answer; the sending server retries later (or tries our other MX).",
	"auth":        "Login failed: wrong user name or password, or too many failures (then it is throttled for a while).",
	"submission":  "A user's sending limit or sender address check: the user may send only as themselves, within the hourly limits.",
	"loop":        "Too many Received lines: the message loops between servers.",
	"protocol":    "The client sent a command out of order or malformed.",
}

// Hint is the admin's hint for a record: "" for accepted mail.
func Hint(r *Record) string {
	if r.Code < 400 {
		return ""
	}
	if h, ok := hints[r.Check]; ok {
		return h
	}
	if r.Code < 500 {
		return "Temporary: our side could not decide now; the sending server retries by itself and nothing is lost."
	}
	return "Refused; the reason is in the reply."
}

type pageRow struct {
	Record
	Outcome, Time, To, Hint string
	SessionLink             string
	Sender                  string // <from>; "" before MAIL
	CheckShown              string // the check, unless it names the stage again
}

type pageData struct {
	F       Filter
	Since   string
	Rows    []pageRow
	Err     string
	Limited bool
}

var pageTemplate = template.Must(template.New("history").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>sekisho history</title>
<style>
body{font-family:sans-serif;margin:1em}table{border-collapse:collapse;font-size:90%}
td,th{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:top}
td{max-width:16em;overflow-wrap:break-word}
.refused{color:#a00}.deferred{color:#a60}.accepted{color:#070}.hint{color:#555;font-size:90%;max-width:24em}
form label{margin-right:1em}
</style></head><body>
<h1>Decision history</h1>
<form method="get" action="/history">
<label>from <input name="from" value="{{.F.From}}" placeholder="addr or @domain"></label>
<label>to <input name="to" value="{{.F.To}}" placeholder="addr or @domain"></label>
<label>client <input name="client" value="{{.F.Client}}" placeholder="IP or net"></label>
<label>Message-ID <input name="msgid" value="{{.F.MsgID}}"></label>
<label>session <input name="session" value="{{.F.Session}}"></label>
<label>since <input name="since" value="{{.Since}}" size="6"></label>
<label>outcome <select name="outcome">
<option value=""{{if eq .F.Outcome ""}} selected{{end}}>any</option>
<option{{if eq .F.Outcome "refused"}} selected{{end}}>refused</option>
<option{{if eq .F.Outcome "deferred"}} selected{{end}}>deferred</option>
<option{{if eq .F.Outcome "accepted"}} selected{{end}}>accepted</option>
</select></label>
<button type="submit">search</button>
</form>
{{if .Err}}<p class="refused">{{.Err}}</p>{{end}}
<p>{{len .Rows}} decisions, newest first{{if .Limited}} (the first {{.F.Limit}} only: narrow the search){{end}}.</p>
<table>
<tr><th>time (UTC)</th><th>gateway</th><th>session</th><th>client</th><th>from</th><th>to</th><th>check</th><th>outcome</th><th>reply</th><th>next hop, queue id, Message-ID</th><th>what it means</th></tr>
{{range .Rows}}<tr>
<td>{{.Time}}</td><td>{{.Gateway}} {{.Listener}}</td>
<td><a href="{{.SessionLink}}">{{.Session}}</a></td>
<td>{{.Client}}{{if .Helo}}<br>HELO {{.Helo}}{{end}}</td>
<td>{{.Sender}}</td><td>{{.To}}</td><td>{{.Stage}} {{.CheckShown}}</td>
<td class="{{.Outcome}}">{{.Outcome}}</td><td>{{.Reply}}{{if .Reason}}<br><small>{{.Reason}}</small>{{end}}</td>
<td>{{.NextHop}}{{if .QueueID}}<br>queued as {{.QueueID}}{{end}}{{if .MsgID}}<br>{{.MsgID}}{{end}}</td>
<td class="hint">{{.Hint}}</td>
</tr>
{{end}}</table>
</body></html>
`))

func (h pageHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'")
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	hd.Set("Cache-Control", "no-store")
	if req.URL.Path != Path {
		http.NotFound(w, req)
		return
	}
	if req.Method != http.MethodGet && req.Method != http.MethodHead {
		hd.Set("Allow", "GET, HEAD")
		http.Error(w, "405 method not allowed: the history is read-only (GET)", http.StatusMethodNotAllowed)
		return
	}
	q := req.URL.Query()
	f := Filter{From: q.Get("from"), To: q.Get("to"), Client: q.Get("client"), MsgID: q.Get("msgid"),
		Session: q.Get("session"), Outcome: q.Get("outcome"), Limit: DefaultLimit}
	d := pageData{Since: q.Get("since")}
	if d.Since == "" {
		d.Since = DefaultSince.String()
	}
	var err error
	if f.Since, err = time.ParseDuration(d.Since); err != nil || f.Since <= 0 {
		err = errBadSince
	}
	if err == nil {
		err = f.Validate()
	}
	d.F = f
	status := http.StatusOK
	if err != nil {
		d.Err, status = err.Error(), http.StatusBadRequest
	} else {
		recs, serr := h.search(req.Context(), f)
		if serr != nil {
			hd.Set("Retry-After", "60")
			http.Error(w, "503 history unavailable: the state store cannot be read.\n"+serr.Error(), http.StatusServiceUnavailable)
			return
		}
		d.Limited = len(recs) >= f.Limit
		for i := range recs {
			r := &recs[i]
			link := url.Values{"session": {r.Session}, "since": {d.Since}}
			row := pageRow{Record: *r, Outcome: r.Outcome(), Time: r.Time.UTC().Format("2006-01-02 15:04:05"),
				To: strings.Join(r.To, ", "), Hint: Hint(r), SessionLink: Path + "?" + link.Encode()}
			switch r.Stage {
			case "connect", "auth", "helo", "ehlo", "session":
				if r.From != "" {
					row.Sender = "<" + r.From + ">"
				}
			default:
				row.Sender = "<" + r.From + ">"
			}
			if r.Check != r.Stage {
				row.CheckShown = r.Check
			}
			d.Rows = append(d.Rows, row)
		}
	}
	var b bytes.Buffer
	if err := pageTemplate.Execute(&b, d); err != nil {
		http.Error(w, "500 cannot render the page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Content-Length", strconv.Itoa(b.Len()))
	w.WriteHeader(status)
	w.Write(b.Bytes())
}

type pageError string

func (e pageError) Error() string { return string(e) }

const errBadSince = pageError("since wants a duration like 24h or 30m")
