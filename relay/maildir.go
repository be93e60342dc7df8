package relay

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"sekisho/internal/mailaddr"
	"sekisho/policy"
)

// maildirTx delivers to a Maildir (tmp/, new/, cur/). The message is written
// to tmp/, fsynced, renamed into new/, and new/ is fsynced before Data
// returns: once the client has its 250 the message survives a power cut.
type maildirTx struct {
	dir     string
	aborted atomic.Bool
}

// openMaildir is the call-ahead of a Maildir: its directories must exist or
// be creatable, otherwise the next hop does not work.
func openMaildir(dir string) (*maildirTx, error) {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("maildir: %w", err)
		}
	}
	return &maildirTx{dir: dir}, nil
}

func (m *maildirTx) Hop() string { return "maildir:" + m.dir }
func (m *maildirTx) LMTP() bool  { return false }

// TLS is nil: a Maildir is written locally.
func (m *maildirTx) TLS() *tls.ConnectionState { return nil }

func (m *maildirTx) Rcpt(context.Context, mailaddr.Address, RcptDSN) error { return nil }

func (m *maildirTx) Data(ctx context.Context, msg io.Reader) error {
	return m.data(ctx, msg, nil)
}

// restart: a Maildir keeps no recipients, nothing to begin again.
func (m *maildirTx) restart(context.Context, []mirrorRcpt) error { return nil }

// data is Data; beforeDot, if set, is called once the message is in tmp/
// and fsynced, before it is moved into new/ (the Maildir's final dot): an
// error from it removes the file.
func (m *maildirTx) data(ctx context.Context, msg io.Reader, beforeDot func() error) error {
	name := maildirName()
	tmp := filepath.Join(m.dir, "tmp", name)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("%w: %v", policy.LocalDeliveryFailed, err)
	}
	_, err = io.Copy(f, msg)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && beforeDot != nil {
		if berr := beforeDot(); berr != nil {
			err = fmt.Errorf("%w: abandoned before delivery: %v", policy.NextHopLost, berr)
		}
	}
	if err == nil && (m.aborted.Load() || ctx.Err() != nil) {
		// Abandoned before the 250 could be given: the client retries, so
		// delivering now would duplicate the message.
		err = fmt.Errorf("%w: delivery abandoned: %v", policy.NextHopLost, errors.Join(ctx.Err(), errAborted(m.aborted.Load())))
	}
	if err != nil {
		os.Remove(tmp)
		// A read error from the client side carries its own reply; a write
		// error (disk full) is ours.
		var r *policy.Reply
		if errors.As(err, &r) {
			return err
		}
		return fmt.Errorf("%w: %v", policy.LocalDeliveryFailed, err)
	}
	if err := os.Rename(tmp, filepath.Join(m.dir, "new", name)); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("%w: %v", policy.LocalDeliveryFailed, err)
	}
	if err := syncDir(filepath.Join(m.dir, "new")); err != nil {
		return fmt.Errorf("%w: %v", policy.LocalDeliveryFailed, err)
	}
	return nil
}

func errAborted(aborted bool) error {
	if aborted {
		return errors.New("aborted")
	}
	return nil
}

func (m *maildirTx) Abort() { m.aborted.Store(true) }
func (m *maildirTx) Close() {}

// maildirName is a unique file name in the Maildir convention: time, random,
// host.
func maildirName() string {
	var b [8]byte
	rand.Read(b[:])
	host, _ := os.Hostname()
	return fmt.Sprintf("%d.%s.%s", time.Now().UnixNano(), hex.EncodeToString(b[:]), host)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
