package main

import (
	"fmt"
	"image/color"
	"strings"

	"github.com/boombuler/barcode/qr"
)

// quietZone is the light margin around a QR code, in modules: the four the
// QR specification requires for a reader to find the code.
const quietZone = 4

// qrModules encodes text as a QR code (error correction level M) and returns
// its modules, dark = true, indexed [y][x], without the quiet zone.
func qrModules(text string) ([][]bool, error) {
	code, err := qr.Encode(text, qr.M, qr.Auto)
	if err != nil {
		return nil, fmt.Errorf("qr encode: %w", err)
	}
	b := code.Bounds()
	m := make([][]bool, b.Dy())
	for y := range m {
		m[y] = make([]bool, b.Dx())
		for x := range m[y] {
			gray := color.GrayModel.Convert(code.At(b.Min.X+x, b.Min.Y+y)).(color.Gray)
			m[y][x] = gray.Y < 0x80
		}
	}
	return m, nil
}

// renderQR renders text as a QR code for a terminal, with Unicode half
// blocks: each character cell holds two modules, one above the other, which
// keeps the modules roughly square in a terminal font.
//
// The characters paint in the terminal's foreground colour. By default they
// paint the light modules and the quiet zone, so that on the usual light-on-dark
// terminal the code appears dark on light, as readers expect. With invert
// they paint the dark modules instead, for dark-on-light terminals.
func renderQR(text string, invert bool) (string, error) {
	m, err := qrModules(text)
	if err != nil {
		return "", err
	}
	return halfBlocks(m, invert), nil
}

// halfBlocks draws the modules m ([y][x], dark = true) surrounded by the quiet
// zone, two module rows per line. When the total height is odd, the bottom
// half of the last line is one more light row.
func halfBlocks(m [][]bool, invert bool) string {
	n := len(m)
	size := n + 2*quietZone
	dark := func(x, y int) bool {
		x, y = x-quietZone, y-quietZone
		return y >= 0 && y < n && x >= 0 && x < len(m[y]) && m[y][x]
	}
	paint := func(x, y int) bool { return dark(x, y) == invert }

	var sb strings.Builder
	for y := 0; y < size; y += 2 {
		for x := 0; x < size; x++ {
			top, bottom := paint(x, y), paint(x, y+1) // y+1 == size: light padding
			switch {
			case top && bottom:
				sb.WriteRune('█')
			case top:
				sb.WriteRune('▀')
			case bottom:
				sb.WriteRune('▄')
			default:
				sb.WriteRune(' ')
			}
		}
		sb.WriteByte('\n')
	}
	return sb.String()
}
