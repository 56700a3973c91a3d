package main

import (
	"strings"
	"testing"
)

// wantQuiet is the quiet zone the QR specification requires, in modules.
const wantQuiet = 4

const testURI = "otpauth://totp/Example:alice@example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=Example&algorithm=SHA1&digits=6&period=30"

// unrender reads halfBlocks output back into a grid of modules, quiet zone
// included, [y][x], dark = true. It fails the test on a ragged or unknown
// character.
func unrender(t *testing.T, s string, invert bool) [][]bool {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(s, "\n"), "\n")
	var grid [][]bool
	width := -1
	for i, line := range lines {
		runes := []rune(line)
		if width == -1 {
			width = len(runes)
		}
		if len(runes) != width {
			t.Fatalf("line %d: %d characters, want %d (as line 0)", i, len(runes), width)
		}
		top, bottom := make([]bool, width), make([]bool, width)
		for x, r := range runes {
			var pt, pb bool
			switch r {
			case '█':
				pt, pb = true, true
			case '▀':
				pt = true
			case '▄':
				pb = true
			case ' ':
			default:
				t.Fatalf("line %d column %d: unexpected character %q", i, x, r)
			}
			// Painted cells are light modules unless inverted.
			top[x], bottom[x] = pt == invert, pb == invert
		}
		grid = append(grid, top, bottom)
	}
	return grid
}

func TestRenderQRStructure(t *testing.T) {
	for _, invert := range []bool{false, true} {
		out, err := renderQR(testURI, invert)
		if err != nil {
			t.Fatal(err)
		}
		grid := unrender(t, out, invert)

		size := len(grid[0])
		n := size - 2*wantQuiet
		if n < 21 || (n-17)%4 != 0 {
			t.Fatalf("invert=%v: %d modules wide without the quiet zone: not a QR code size (17+4v)", invert, n)
		}
		if got, want := len(strings.Split(strings.TrimSuffix(out, "\n"), "\n")), (size+1)/2; got != want {
			t.Fatalf("invert=%v: %d lines, want %d for %d module rows", invert, got, want, size)
		}
		// One padding row when the height is odd; it must be light.
		if len(grid) != size+size%2 {
			t.Fatalf("invert=%v: %d module rows, want %d", invert, len(grid), size+size%2)
		}
		for y := size; y < len(grid); y++ {
			for x, d := range grid[y] {
				if d {
					t.Fatalf("invert=%v: padding row %d has a dark module at x=%d", invert, y, x)
				}
			}
		}

		// The quiet zone is light all round.
		for y := 0; y < size; y++ {
			for x := 0; x < size; x++ {
				inside := x >= wantQuiet && x < size-wantQuiet && y >= wantQuiet && y < size-wantQuiet
				if !inside && grid[y][x] {
					t.Fatalf("invert=%v: quiet zone has a dark module at (%d,%d)", invert, x, y)
				}
			}
		}

		code := make([][]bool, n)
		for y := range code {
			code[y] = grid[y+wantQuiet][wantQuiet : wantQuiet+n]
		}
		checkQRStructure(t, code)

		// The rendering round-trips to the encoder's modules.
		want, err := qrModules(testURI)
		if err != nil {
			t.Fatal(err)
		}
		for y := range want {
			for x := range want[y] {
				if code[y][x] != want[y][x] {
					t.Fatalf("invert=%v: module (%d,%d) = %v, encoder says %v", invert, x, y, code[y][x], want[y][x])
				}
			}
		}
	}
}

func TestRenderQRInvertIsComplement(t *testing.T) {
	plain, err := renderQR("hello", false)
	if err != nil {
		t.Fatal(err)
	}
	inverted, err := renderQR("hello", true)
	if err != nil {
		t.Fatal(err)
	}
	swap := map[rune]rune{'█': ' ', ' ': '█', '▀': '▄', '▄': '▀', '\n': '\n'}
	pr, ir := []rune(plain), []rune(inverted)
	if len(pr) != len(ir) {
		t.Fatalf("lengths differ: %d and %d", len(pr), len(ir))
	}
	for i := range pr {
		if swap[pr[i]] != ir[i] {
			t.Fatalf("character %d: %q inverted is %q, want %q", i, pr[i], ir[i], swap[pr[i]])
		}
	}
}

func TestRenderQRTooLong(t *testing.T) {
	if _, err := renderQR(strings.Repeat("\x01", 4000), false); err == nil {
		t.Fatal("renderQR of 4000 bytes: no error, want one (beyond QR capacity)")
	}
}

// checkQRStructure checks, on the modules of a QR code ([y][x], dark = true,
// no quiet zone), the function patterns every reader relies on: the three
// finder patterns and their separators, the timing patterns, the dark module,
// and the two copies of the format information, which must agree and be a
// valid BCH codeword for error correction level M.
func checkQRStructure(t *testing.T, m [][]bool) {
	t.Helper()
	n := len(m)
	finder := func(x0, y0 int) bool {
		for dy := 0; dy < 7; dy++ {
			for dx := 0; dx < 7; dx++ {
				ring := max(abs(dx-3), abs(dy-3)) // 3 outer dark, 2 light, 0-1 dark centre
				if m[y0+dy][x0+dx] != (ring != 2) {
					return false
				}
			}
		}
		return true
	}
	for _, c := range []struct {
		name   string
		x0, y0 int
	}{{"top-left", 0, 0}, {"top-right", n - 7, 0}, {"bottom-left", 0, n - 7}} {
		if !finder(c.x0, c.y0) {
			t.Errorf("no finder pattern %s", c.name)
		}
	}
	if finder(n-7, n-7) {
		t.Error("finder pattern bottom-right: the code is flipped")
	}
	// Separators: the light line between each finder and the data.
	for i := 0; i < 8; i++ {
		for _, p := range [][2]int{{i, 7}, {7, i}, {n - 1 - i, 7}, {n - 8, i}, {i, n - 8}, {7, n - 1 - i}} {
			if m[p[1]][p[0]] {
				t.Errorf("separator module (%d,%d) is dark", p[0], p[1])
			}
		}
	}
	for i := 8; i < n-8; i++ {
		if m[6][i] != (i%2 == 0) || m[i][6] != (i%2 == 0) {
			t.Errorf("timing pattern broken at %d", i)
		}
	}
	if !m[n-8][8] {
		t.Error("the dark module (8, n-8) is light: the code is transposed")
	}

	// Format information, read as a reader does (ISO/IEC 18004 §7.9).
	var first, second uint16
	bit := func(v *uint16, x, y int) {
		*v <<= 1
		if m[y][x] {
			*v |= 1
		}
	}
	for x := 0; x < 6; x++ {
		bit(&first, x, 8)
	}
	bit(&first, 7, 8)
	bit(&first, 8, 8)
	bit(&first, 8, 7)
	for y := 5; y >= 0; y-- {
		bit(&first, 8, y)
	}
	for y := n - 1; y >= n-7; y-- {
		bit(&second, 8, y)
	}
	for x := n - 8; x < n; x++ {
		bit(&second, x, 8)
	}
	if first != second {
		t.Fatalf("format information copies differ: %015b and %015b", first, second)
	}
	info := first ^ 0x5412
	data := info >> 10
	rem := uint32(data) << 10
	for i := 14; i >= 10; i-- {
		if rem&(1<<i) != 0 {
			rem ^= 0x537 << (i - 10)
		}
	}
	if uint16(rem) != info&0x3ff {
		t.Fatalf("format information %015b: bad BCH check bits", first)
	}
	if ecl := data >> 3; ecl != 0b00 {
		t.Errorf("error correction level bits %02b, want 00 (M)", ecl)
	}
}

func abs(i int) int {
	if i < 0 {
		return -i
	}
	return i
}
