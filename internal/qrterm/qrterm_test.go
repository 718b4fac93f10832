package qrterm

import (
	"bytes"
	"image/png"
	"strings"
	"testing"
)

const uri = "otpauth://totp/web-01:alice?algorithm=SHA1&digits=6&issuer=web-01&period=30&secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"

// TestUTF8RoundTrip reads the half-block drawing back into modules: it
// must be exactly the matrix inside its light border.
func TestUTF8RoundTrip(t *testing.T) {
	m, err := Matrix(uri)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(UTF8(m), "\n"), "\n")
	n := len(m) + 2*quiet
	if len(lines) != (n+1)/2 {
		t.Fatalf("%d lines for %d modules", len(lines), n)
	}
	for y := 0; y < n; y++ {
		row := []rune(lines[y/2])
		if len(row) != n {
			t.Fatalf("line %d has %d cells, want %d", y/2, len(row), n)
		}
		for x := 0; x < n; x++ {
			c := row[x]
			light := c == '█' || (y%2 == 0 && c == '▀') || (y%2 == 1 && c == '▄')
			dark := x >= quiet && x < n-quiet && y >= quiet && y < n-quiet && m[y-quiet][x-quiet]
			if light == dark {
				t.Fatalf("module (%d,%d): drawn light=%v, matrix dark=%v", x, y, light, dark)
			}
		}
	}
}

func TestANSIAndPNG(t *testing.T) {
	m, err := Matrix(uri)
	if err != nil {
		t.Fatal(err)
	}
	a := ANSI(m)
	if got, want := strings.Count(a, "\n"), len(m)+2*quiet; got != want {
		t.Errorf("ANSI: %d lines, want %d", got, want)
	}
	if strings.Count(a, "\x1b[40m") != countDark(m) {
		t.Error("ANSI: dark cells do not match the matrix")
	}
	var b bytes.Buffer
	if err := PNG(&b, m, 4); err != nil {
		t.Fatal(err)
	}
	img, err := png.Decode(&b)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := img.Bounds().Dx(), (len(m)+8)*4; got != want {
		t.Errorf("PNG is %d px wide, want %d", got, want)
	}
}

func countDark(m [][]bool) int {
	n := 0
	for _, row := range m {
		for _, d := range row {
			if d {
				n++
			}
		}
	}
	return n
}
