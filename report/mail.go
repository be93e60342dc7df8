package report

// The Monday mail: the text report with the SVG chart attached, as one
// MIME message (RFC 2045, RFC 2046 multipart/mixed) ready for SMTP: CRLF
// line endings, 7-bit clean (the text quoted-printable, the chart base64),
// so that any next hop takes it without 8BITMIME or SMTPUTF8.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/textproto"
	"strings"
	"time"
)

// MailHeader is what the mail's header says besides the report itself.
type MailHeader struct {
	From string    // addr-spec, "sekisho@mx1.campus.example"
	To   string    // addr-spec
	Date time.Time // the Date: header
	// MessageID is the Message-ID without its angle brackets; "" makes a
	// random one in the From domain.
	MessageID string
}

// Subject is the mail's subject: "sekisho weekly report 2026-W47", the
// report's last complete week (the Monday mail is about it, not about the
// hours of the week so far), or its period when it has none.
func (r *Report) Subject() string {
	if w := r.LastComplete(); w != nil {
		return "sekisho weekly report " + w.Week
	}
	return "sekisho weekly report " + r.From + " to " + r.To
}

// SVGFileName is the chart's file name in the mail:
// "sekisho-report-2026-W47.svg".
func (r *Report) SVGFileName() string {
	if w := r.LastComplete(); w != nil {
		return "sekisho-report-" + safeName(w.Week) + ".svg"
	}
	return "sekisho-report.svg"
}

// WriteMail writes the report as a mail message: the text report
// (WriteText) as the first part, the SVG chart (WriteSVG) attached as the
// second, with Date, Message-ID, From, To, Subject and
// Auto-Submitted: auto-generated (RFC 3834: no auto-replies to it).
func (r *Report) WriteMail(w io.Writer, h MailHeader) error {
	for _, v := range []string{h.From, h.To, h.MessageID} {
		if strings.ContainsAny(v, "\r\n") {
			return errors.New("report: a mail header value holds a line break")
		}
	}
	if h.From == "" || h.To == "" {
		return errors.New("report: the mail needs a From and a To")
	}
	if h.Date.IsZero() {
		h.Date = time.Now()
	}
	if h.MessageID == "" {
		var b [12]byte
		rand.Read(b[:])
		domain := h.From[strings.LastIndexByte(h.From, '@')+1:]
		h.MessageID = fmt.Sprintf("%d.%s@%s", h.Date.Unix(), hex.EncodeToString(b[:]), domain)
	}
	var text, svg bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		return err
	}
	if err := r.WriteSVG(&svg); err != nil {
		return err
	}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	var head bytes.Buffer
	for _, f := range [][2]string{
		{"Date", h.Date.Format(time.RFC1123Z)},
		{"From", "sekisho <" + h.From + ">"},
		{"To", "<" + h.To + ">"},
		{"Subject", mime.QEncoding.Encode("utf-8", r.Subject())},
		{"Message-ID", "<" + h.MessageID + ">"},
		{"MIME-Version", "1.0"},
		{"Auto-Submitted", "auto-generated"},
		{"Content-Type", mime.FormatMediaType("multipart/mixed", map[string]string{"boundary": mw.Boundary()})},
	} {
		fmt.Fprintf(&head, "%s: %s\r\n", f[0], f[1])
	}
	head.WriteString("\r\nThe sekisho weekly report, with its chart attached (SVG).\r\n")

	tp, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {"text/plain; charset=utf-8"},
		"Content-Transfer-Encoding": {"quoted-printable"},
		"Content-Disposition":       {"inline"},
	})
	if err != nil {
		return err
	}
	qp := quotedprintable.NewWriter(tp)
	if _, err := qp.Write(text.Bytes()); err != nil {
		return err
	}
	if err := qp.Close(); err != nil {
		return err
	}
	name := r.SVGFileName()
	ap, err := mw.CreatePart(textproto.MIMEHeader{
		"Content-Type":              {mime.FormatMediaType("image/svg+xml", map[string]string{"name": name})},
		"Content-Transfer-Encoding": {"base64"},
		"Content-Disposition":       {mime.FormatMediaType("attachment", map[string]string{"filename": name})},
	})
	if err != nil {
		return err
	}
	enc := base64.StdEncoding.EncodeToString(svg.Bytes())
	for len(enc) > 76 {
		io.WriteString(ap, enc[:76]+"\r\n")
		enc = enc[76:]
	}
	io.WriteString(ap, enc+"\r\n")
	if err := mw.Close(); err != nil {
		return err
	}
	if _, err := w.Write(head.Bytes()); err != nil {
		return err
	}
	_, err = w.Write(body.Bytes())
	return err
}
