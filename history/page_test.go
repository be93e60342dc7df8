package history

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// hostile is a session whose every field the client chose to attack the
// page that shows it.
var hostile = []Record{
	{Time: time.Now(), Gateway: "mx1", Listener: "smtp", Session: "abc123", Client: "192.0.2.66",
		Helo: `<img src=x onerror=alert(1)>`, Stage: "rcpt",
		From: `"<script>alert(1)</script>"@evil.example`, To: []string{`"</td><svg onload=alert(2)>"@campus.test`},
		Check: "account", Code: 550, Reply: `550 5.1.1 <"><iframe src=javascript:alert(3)>> unknown`,
		Reason: "no entry for \"'><style>body{display:none}</style>", MsgID: `<a href="javascript:alert(4)">x</a>`,
		QueueID: "4F<b>", NextHop: "smtp://10.0.0.1:25"},
}

// TestPageRendersHostileAddressesInert: parsed as a browser would, the page
// holds only the elements of its own template, no event attribute, no link
// but to /history and no script; every hostile string is there as text.
func TestPageRendersHostileAddressesInert(t *testing.T) {
	var got Filter
	h := PageHandler(func(_ context.Context, f Filter) ([]Record, error) { got = f; return hostile, nil })
	q := "/history?from=%3Cscript%3E&since=48h&outcome=refused"
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", q, nil))
	if rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, rec.Body)
	}
	if got.From != "<script>" || got.Since != 48*time.Hour || got.Outcome != "refused" {
		t.Errorf("filter from the form: %+v", got)
	}
	if csp := rec.Header().Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("CSP %q", csp)
	}
	body := rec.Body.String()
	allowed := map[string]bool{"html": true, "head": true, "meta": true, "title": true, "style": true, "body": true,
		"h1": true, "form": true, "label": true, "input": true, "select": true, "option": true, "button": true,
		"p": true, "table": true, "tbody": true, "tr": true, "th": true, "td": true, "a": true, "br": true, "small": true}
	styles := 0
	var text strings.Builder
	z := html.NewTokenizer(strings.NewReader(body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		tok := z.Token()
		switch tt {
		case html.StartTagToken, html.SelfClosingTagToken:
			if !allowed[tok.Data] {
				t.Errorf("element <%s> on the page", tok.Data)
			}
			if tok.Data == "style" {
				styles++
			}
			for _, a := range tok.Attr {
				if strings.HasPrefix(strings.ToLower(a.Key), "on") {
					t.Errorf("event attribute %s=%q", a.Key, a.Val)
				}
				if a.Key == "href" && !strings.HasPrefix(a.Val, "/history?") {
					t.Errorf("link %q", a.Val)
				}
			}
		case html.TextToken:
			text.WriteString(tok.Data)
		}
	}
	if styles != 1 {
		t.Errorf("%d <style> elements, want the template's one", styles)
	}
	for _, s := range []string{hostile[0].From, hostile[0].Helo, hostile[0].Reply, hostile[0].MsgID, hostile[0].To[0], hostile[0].Reason} {
		if !strings.Contains(text.String(), s) {
			t.Errorf("the page's text lacks %q", s)
		}
	}
	if !strings.Contains(body, `href="/history?session=abc123&amp;since=48h"`) {
		t.Errorf("no link to the session's rows in\n%s", body)
	}
	if !strings.Contains(text.String(), hints["account"]) {
		t.Error("no hint for the refusal")
	}
}

func TestPageRefusals(t *testing.T) {
	h := PageHandler(func(context.Context, Filter) ([]Record, error) { return nil, errors.New("redis: connection refused") })
	for _, c := range []struct {
		method, target string
		want           int
	}{
		{"GET", "/history", http.StatusServiceUnavailable},
		{"POST", "/history", http.StatusMethodNotAllowed},
		{"GET", "/history?since=forever", http.StatusBadRequest},
		{"GET", "/history?outcome=bounced", http.StatusBadRequest},
		{"GET", "/history?client=x", http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.target, nil))
		if rec.Code != c.want {
			t.Errorf("%s %s: %d, want %d", c.method, c.target, rec.Code, c.want)
		}
	}
}
