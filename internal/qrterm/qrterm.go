// Package qrterm draws a QR code of a key URI for a terminal, or as a PNG.
//
// The QR matrix comes from github.com/boombuler/barcode, the encoder
// github.com/pquerna/otp itself uses for key images.
package qrterm

import (
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"

	"github.com/boombuler/barcode"
	"github.com/boombuler/barcode/qr"
)

// quiet is the light border around the code, in modules (the QR standard
// asks for 4; 2 is what terminal scanners need and saves lines).
const quiet = 2

// Matrix returns the QR modules of text: true is dark.
func Matrix(text string) ([][]bool, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("making the QR code: %w", err)
	}
	return matrixOf(code), nil
}

// SmallMatrix is Matrix with the lowest error correction (L, about 7 %):
// the smallest code for a text, for a screen, where a code is never
// smudged or torn. First-login enrollment draws it inside a login prompt,
// where every line counts in an 80x24 terminal.
func SmallMatrix(text string) ([][]bool, error) {
	code, err := qr.Encode(text, qr.L, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("making the QR code: %w", err)
	}
	return matrixOf(code), nil
}

func matrixOf(code barcode.Barcode) [][]bool {
	b := code.Bounds()
	m := make([][]bool, b.Dy())
	for y := range m {
		m[y] = make([]bool, b.Dx())
		for x := range m[y] {
			r, _, _, _ := code.At(b.Min.X+x, b.Min.Y+y).RGBA()
			m[y][x] = r < 0x8000
		}
	}
	return m
}

// withBorder returns m inside a light border of quiet modules.
func withBorder(m [][]bool) [][]bool {
	n := len(m) + 2*quiet
	out := make([][]bool, n)
	for y := range out {
		out[y] = make([]bool, n)
		if y >= quiet && y < n-quiet {
			copy(out[y][quiet:], m[y-quiet])
		}
	}
	return out
}

// UTF8 draws m with half blocks, two modules per character cell, for the
// usual light-on-dark terminal: light modules are drawn, dark ones are
// left as the background.
func UTF8(m [][]bool) string {
	m = withBorder(m)
	var b strings.Builder
	for y := 0; y < len(m); y += 2 {
		for x := range m[y] {
			top := !m[y][x]
			bottom := y+1 < len(m) && !m[y+1][x]
			switch {
			case top && bottom:
				b.WriteString("█")
			case top:
				b.WriteString("▀")
			case bottom:
				b.WriteString("▄")
			default:
				b.WriteString(" ")
			}
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ANSI draws m with explicit black and white background colours, two
// character cells per module, readable on any terminal colour scheme.
func ANSI(m [][]bool) string {
	m = withBorder(m)
	const dark, light, reset = "\x1b[40m  ", "\x1b[47m  ", "\x1b[0m"
	var b strings.Builder
	for _, row := range m {
		for _, d := range row {
			if d {
				b.WriteString(dark)
			} else {
				b.WriteString(light)
			}
		}
		b.WriteString(reset + "\n")
	}
	return b.String()
}

// PNG writes m as a black-on-white PNG with a 4-module border, scale
// pixels per module.
func PNG(w io.Writer, m [][]bool, scale int) error {
	const border = 4
	n := (len(m) + 2*border) * scale
	img := image.NewGray(image.Rect(0, 0, n, n))
	for i := range img.Pix {
		img.Pix[i] = 0xff
	}
	for y, row := range m {
		for x, d := range row {
			if !d {
				continue
			}
			for dy := 0; dy < scale; dy++ {
				for dx := 0; dx < scale; dx++ {
					img.SetGray((x+border)*scale+dx, (y+border)*scale+dy, color.Gray{})
				}
			}
		}
	}
	return png.Encode(w, img)
}
