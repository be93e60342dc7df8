package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"sekisho/policy"
)

// maildirUpstream delivers to a Maildir (tmp/, new/, cur/). The message is
// written to tmp/, fsynced, renamed into new/, and new/ is fsynced before Data
// returns: once the client has its 250 the message survives a power cut.
type maildirUpstream struct {
	dir string
}

func openMaildir(dir string) *maildirUpstream { return &maildirUpstream{dir: dir} }

func (m *maildirUpstream) Hop() string { return "maildir:" + m.dir }

func (m *maildirUpstream) Rcpt(context.Context, string) error { return nil }

func (m *maildirUpstream) Data(ctx context.Context, msg io.Reader) error {
	for _, sub := range []string{"tmp", "new", "cur"} {
		if err := os.MkdirAll(filepath.Join(m.dir, sub), 0o700); err != nil {
			return fmt.Errorf("%w: %v", policy.LocalDeliveryFailed, err)
		}
	}
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
	if err != nil {
		os.Remove(tmp)
		// A read error from the client side carries its own reply; a write
		// error (disk full) is ours.
		if _, isReply := asReply(err); isReply {
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

func (m *maildirUpstream) Abort() {}
func (m *maildirUpstream) Close() {}

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
