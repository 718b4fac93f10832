// Package tomlshape refuses TOML that otpgate never writes and that the
// TOML parser handles slowly: its time grows with the square of a dotted
// key's depth and of inline-table nesting (a 64 KiB line of either takes
// the better part of a minute). otpgate's files and config use plain
// keys, [table] headers and flat arrays, so a small bound on each costs
// nothing and keeps every parse under a millisecond or so.
package tomlshape

import (
	"bytes"
	"fmt"
)

// Bounds on what a file may hold before it is parsed.
const (
	MaxLine      = 8 << 10 // bytes in one line (50 backup-code hashes are about 5 KiB)
	MaxKeyDots   = 8       // dots in the key part of a line
	MaxBraces    = 16      // '{' in the whole file
	MaxNestDepth = 8       // '[' or '{' open at once
)

// Check returns an error naming the line of the first thing over a bound.
func Check(data []byte) error {
	if n := bytes.Count(data, []byte("{")); n > MaxBraces {
		return fmt.Errorf("%d inline tables; otpgate files have none", n)
	}
	for i, line := range bytes.Split(data, []byte("\n")) {
		n := i + 1
		if len(line) > MaxLine {
			return fmt.Errorf("line %d is over %d bytes", n, MaxLine)
		}
		key := line
		if eq := bytes.IndexByte(line, '='); eq >= 0 {
			key = line[:eq]
		}
		if bytes.Count(key, []byte(".")) > MaxKeyDots {
			return fmt.Errorf("line %d: a key with more than %d dots", n, MaxKeyDots)
		}
		depth := 0
		for _, c := range line {
			switch c {
			case '[', '{':
				if depth++; depth > MaxNestDepth {
					return fmt.Errorf("line %d: nested deeper than %d", n, MaxNestDepth)
				}
			case ']', '}':
				depth--
			}
		}
	}
	return nil
}
