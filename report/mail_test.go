package report_test

import (
	"bytes"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"sekisho/report"
)

// parseReportMail parses a report mail and returns its header, the text
// part (decoded) and the SVG attachment (decoded), failing t when the MIME
// structure is not the one documented.
func parseReportMail(t *testing.T, raw []byte) (mail.Header, string, []byte, string) {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/mixed" || m.Header.Get("MIME-Version") != "1.0" {
		t.Fatalf("Content-Type %q (%v), MIME-Version %q", m.Header.Get("Content-Type"), err, m.Header.Get("MIME-Version"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	var text string
	var svg []byte
	var name string
	for i := 0; ; i++ {
		p, err := mr.NextPart() // decodes quoted-printable itself
		if err == io.EOF {
			if i != 2 {
				t.Fatalf("%d parts, want 2", i)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(p)
		if err != nil {
			t.Fatal(err)
		}
		ct, ctp, _ := mime.ParseMediaType(p.Header.Get("Content-Type"))
		switch i {
		case 0:
			if ct != "text/plain" || ctp["charset"] != "utf-8" {
				t.Errorf("first part %q", p.Header.Get("Content-Type"))
			}
			text = string(b)
		case 1:
			if ct != "image/svg+xml" || p.Header.Get("Content-Transfer-Encoding") != "base64" {
				t.Errorf("second part %q %q", p.Header.Get("Content-Type"), p.Header.Get("Content-Transfer-Encoding"))
			}
			disp, dp, _ := mime.ParseMediaType(p.Header.Get("Content-Disposition"))
			if disp != "attachment" {
				t.Errorf("second part disposition %q", p.Header.Get("Content-Disposition"))
			}
			name = dp["filename"]
			svg, err = io.ReadAll(base64.NewDecoder(base64.StdEncoding, bytes.NewReader(b)))
			if err != nil {
				t.Fatalf("attachment: %v", err)
			}
		}
	}
	return m.Header, text, svg, name
}

// TestWriteMail: the mail is 7-bit MIME with CRLF lines no longer than
// RFC 5322 allows; its header says who, when and what week; its parts
// are the text report and the SVG chart, byte for byte.
func TestWriteMail(t *testing.T) {
	r := chartReport()
	r.Weeks[2].Top[0].Domains[0].Domain = "bücher.example" // 8-bit text in the report
	date := time.Date(2026, 11, 23, 7, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	if err := r.WriteMail(&b, report.MailHeader{From: "sekisho@mx1.campus.example", To: "postmaster@campus.example", Date: date}); err != nil {
		t.Fatal(err)
	}
	raw := b.Bytes()
	for i, line := range strings.Split(string(raw), "\r\n") {
		if strings.Contains(line, "\n") || len(line) > 998 {
			t.Fatalf("line %d: bare LF or longer than 998: %q", i+1, line)
		}
	}
	for _, c := range raw {
		if c >= 0x80 {
			t.Fatal("the mail is not 7-bit")
		}
	}
	h, text, svg, name := parseReportMail(t, raw)
	for k, want := range map[string]string{
		"Subject":        "sekisho weekly report 2026-W47",
		"To":             "<postmaster@campus.example>",
		"Auto-Submitted": "auto-generated",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
	if from, err := mail.ParseAddress(h.Get("From")); err != nil || from.Address != "sekisho@mx1.campus.example" {
		t.Errorf("From %q: %v", h.Get("From"), err)
	}
	if d, err := h.Date(); err != nil || !d.Equal(date) {
		t.Errorf("Date %q: %v", h.Get("Date"), err)
	}
	if id := h.Get("Message-ID"); !strings.HasPrefix(id, "<") || !strings.HasSuffix(id, "@mx1.campus.example>") {
		t.Errorf("Message-ID %q", id)
	}
	var wantText, wantSVG bytes.Buffer
	r.WriteText(&wantText)
	r.WriteSVG(&wantSVG)
	if strings.ReplaceAll(text, "\r\n", "\n") != wantText.String() {
		t.Errorf("text part differs from WriteText:\n%s", text)
	}
	if !strings.Contains(text, "bücher.example") {
		t.Error("the UTF-8 text did not survive quoted-printable")
	}
	if !bytes.Equal(svg, wantSVG.Bytes()) {
		t.Errorf("the attachment is not the chart (%d bytes, want %d)", len(svg), wantSVG.Len())
	}
	if name != "sekisho-report-2026-W47.svg" {
		t.Errorf("attachment name %q", name)
	}

	// Two mails, two Message-IDs.
	var b2 bytes.Buffer
	r.WriteMail(&b2, report.MailHeader{From: "sekisho@mx1.campus.example", To: "postmaster@campus.example", Date: date})
	h2, _, _, _ := parseReportMail(t, b2.Bytes())
	if h2.Get("Message-ID") == h.Get("Message-ID") {
		t.Error("the same Message-ID twice")
	}
}

// TestWriteMailRefusesHeaderInjection: an address with a line break would
// add headers: refused.
func TestWriteMailRefusesHeaderInjection(t *testing.T) {
	r := chartReport()
	for _, h := range []report.MailHeader{
		{From: "sekisho@x.example", To: "a@x.example\r\nBcc: victim@y.example"},
		{From: "sekisho@x.example\nX: y", To: "a@x.example"},
		{From: "", To: "a@x.example"},
	} {
		var b bytes.Buffer
		if err := r.WriteMail(&b, h); err == nil || b.Len() != 0 {
			t.Errorf("%+v: err %v, wrote %d bytes", h, err, b.Len())
		}
	}
}
