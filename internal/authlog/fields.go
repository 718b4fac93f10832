package authlog

import (
	"strconv"
	"strings"
)

// Fields builds an attempt line from key, value pairs, in the order given:
// key=value separated by single spaces. A value is written as it is when it
// is not empty and holds only ASCII letters, digits and . _ : @ / + -;
// anything else (a space, a quote, an equals sign, a control or non-ASCII
// character, or nothing at all) is written as a double-quoted string with
// Go's escapes (\", \\, \t, \xNN, \uNNNN). A user name or remote host can
// therefore never read as another field, and one line always parses back
// to the fields otpgate wrote; see docs/logging.md for the format.
//
// Keys are otpgate's own constants. An odd number of arguments is a bug;
// the last key then gets an empty value.
func Fields(kv ...string) string {
	var b strings.Builder
	for i := 0; i < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		v := ""
		if i+1 < len(kv) {
			v = kv[i+1]
		}
		b.WriteString(Value(v))
	}
	return b.String()
}

// Value is one value as Fields writes it.
func Value(v string) string {
	if v != "" && strings.Trim(v, bare) == "" {
		return v
	}
	return strconv.QuoteToASCII(v)
}

// bare are the characters of a value written without quotes.
const bare = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@/+-"
