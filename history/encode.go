package history

import (
	"strconv"
	"unicode/utf8"
)

// appendJSON appends r's stored form to dst: the bytes json.Marshal gives
// for wire{T: r.Time.UnixNano(), Record: *r} (same fields, same order,
// same omissions, same escaping, HTML characters included), without
// reflection and without allocating beyond dst's growth. Unmarshal
// (encoding/json) reads it; TestAppendJSONIsJSONMarshal holds the two
// equal.
func (r *Record) appendJSON(dst []byte) []byte {
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, r.Time.UnixNano(), 10)
	dst = appendField(dst, `,"gw":`, r.Gateway)
	dst = appendField(dst, `,"l":`, r.Listener)
	dst = appendField(dst, `,"s":`, r.Session)
	dst = appendField(dst, `,"ip":`, r.Client)
	dst = appendField(dst, `,"h":`, r.Helo)
	dst = appendField(dst, `,"st":`, r.Stage)
	dst = appendField(dst, `,"f":`, r.From)
	if len(r.To) > 0 {
		dst = append(dst, `,"to":[`...)
		for i, t := range r.To {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, t)
		}
		dst = append(dst, ']')
	}
	dst = appendField(dst, `,"c":`, r.Check)
	dst = append(dst, `,"code":`...)
	dst = strconv.AppendInt(dst, int64(r.Code), 10)
	dst = appendField(dst, `,"r":`, r.Reply)
	dst = appendField(dst, `,"why":`, r.Reason)
	dst = appendField(dst, `,"hop":`, r.NextHop)
	dst = appendField(dst, `,"qid":`, r.QueueID)
	dst = appendField(dst, `,"hr":`, r.HopReply)
	dst = appendField(dst, `,"mid":`, r.MsgID)
	if r.Size != 0 {
		dst = append(dst, `,"sz":`...)
		dst = strconv.AppendInt(dst, r.Size, 10)
	}
	dst = appendField(dst, `,"tls":`, r.TLS)
	dst = appendField(dst, `,"u":`, r.User)
	return append(dst, '}')
}

// appendField appends an omitempty string field: its key (with the comma
// before it) and its value, or nothing when s is "".
func appendField(dst []byte, key, s string) []byte {
	if s == "" {
		return dst
	}
	return appendJSONString(append(dst, key...), s)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s quoted as encoding/json quotes a string:
// '"' and '\\' escaped, \b \f \n \r \t by name, other control characters
// and '<', '>', '&' as \u00XX, invalid UTF-8 as \ufffd, U+2028 and U+2029
// as \u2028 and \u2029.
func appendJSONString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b >= 0x20 && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		c, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case c == utf8.RuneError && size == 1:
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
		case c == '\u2028' || c == '\u2029':
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
