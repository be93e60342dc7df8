package main

// `sekisho explain -message FILE`: the checks of the end of DATA on a stored
// message, as the gateway would run them on it from the client -ip with
// -helo and -from: the header check, DKIM (each signature's result) and
// DMARC, and the Authentication-Results field the message would get.

import (
	"bytes"
	"flag"
	"os"
)

// messageFlag registers -message on the explain flags.
func messageFlag(fs *flag.FlagSet) *string {
	return fs.String("message", "", "a stored message (header and body) to run the checks of the end of DATA on: header, DKIM, DMARC")
}

// readMessageFile reads a stored message with CRLF line endings, as it
// would come over SMTP, whatever the file used (a Maildir file has LF).
// The last line gets its CRLF.
func readMessageFile(path string) ([]byte, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	raw = bytes.ReplaceAll(raw, []byte("\r\n"), []byte("\n"))
	if len(raw) > 0 && raw[len(raw)-1] != '\n' {
		raw = append(raw, '\n')
	}
	return bytes.ReplaceAll(raw, []byte("\n"), []byte("\r\n")), nil
}
