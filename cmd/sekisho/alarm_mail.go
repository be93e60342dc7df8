package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"sekisho/internal/mailaddr"
	"sekisho/relay"
)

// alarmMailTimeout bounds the sending of one alarm mail.
const alarmMailTimeout = 2 * time.Minute

// alarmMailer mails the alarm's notices to to, through the next hop of its
// route (relay.Router.Begin), from the null sender so that a failure never
// bounces back to us. It holds no queue: a notice that cannot be sent is
// logged and dropped (the ERROR and INFO lines remain).
func alarmMailer(router *relay.Router, hostname string, to mailaddr.Address, log *slog.Logger) func(subject, body string) {
	return func(subject, body string) {
		ctx, cancel := context.WithTimeout(context.Background(), alarmMailTimeout)
		defer cancel()
		err := sendAlarmMail(ctx, router, hostname, to, subject, body)
		if err != nil {
			log.Warn("alarm mail not sent", "to", to.String(), "subject", subject, "err", err)
			return
		}
		log.Info("alarm mail sent", "to", to.String(), "subject", subject)
	}
}

func sendAlarmMail(ctx context.Context, router *relay.Router, hostname string, to mailaddr.Address, subject, body string) error {
	domain := mailaddr.Fold(to.Domain)
	route := router.Lookup(domain)
	if route < 0 {
		return fmt.Errorf("no route for %s", domain)
	}
	tx, err := router.Begin(ctx, route, domain, relay.Envelope{})
	if err != nil {
		return err
	}
	defer tx.Close()
	if err := tx.Rcpt(ctx, to, relay.RcptDSN{}); err != nil {
		tx.Abort()
		return err
	}
	var id [8]byte
	rand.Read(id[:])
	var msg strings.Builder
	fmt.Fprintf(&msg, "From: sekisho <postmaster@%s>\r\n", hostname)
	fmt.Fprintf(&msg, "To: <%s>\r\n", to.String())
	fmt.Fprintf(&msg, "Subject: %s\r\n", subject)
	fmt.Fprintf(&msg, "Date: %s\r\n", time.Now().Format(time.RFC1123Z))
	fmt.Fprintf(&msg, "Message-ID: <%s.alarm@%s>\r\n", hex.EncodeToString(id[:]), hostname)
	msg.WriteString("Auto-Submitted: auto-generated\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n")
	msg.WriteString(strings.ReplaceAll(strings.TrimRight(body, "\n"), "\n", "\r\n") + "\r\n")
	return tx.Data(ctx, strings.NewReader(msg.String()))
}
