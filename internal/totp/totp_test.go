package totp_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"image/png"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pquerna/otp"

	"github.com/secondfactor/secondfactor/internal/totp"
)

// RFC 6238 appendix B: the seed is the ASCII string "1234567890" repeated to
// the length of the hash (20, 32 and 64 bytes).
var (
	rfcSeedSHA1   = []byte("12345678901234567890")
	rfcSeedSHA256 = []byte("12345678901234567890123456789012")
	rfcSeedSHA512 = []byte("1234567890123456789012345678901234567890123456789012345678901234")
)

func TestCodeRFC6238Vectors(t *testing.T) {
	tests := []struct {
		unix int64
		alg  totp.Algorithm
		want string
	}{
		{59, totp.SHA1, "94287082"},
		{59, totp.SHA256, "46119246"},
		{59, totp.SHA512, "90693936"},
		{1111111109, totp.SHA1, "07081804"},
		{1111111109, totp.SHA256, "68084774"},
		{1111111109, totp.SHA512, "25091201"},
		{1111111111, totp.SHA1, "14050471"},
		{1111111111, totp.SHA256, "67062674"},
		{1111111111, totp.SHA512, "99943326"},
		{1234567890, totp.SHA1, "89005924"},
		{1234567890, totp.SHA256, "91819424"},
		{1234567890, totp.SHA512, "93441116"},
		{2000000000, totp.SHA1, "69279037"},
		{2000000000, totp.SHA256, "90698825"},
		{2000000000, totp.SHA512, "38618901"},
		{20000000000, totp.SHA1, "65353130"},
		{20000000000, totp.SHA256, "77737706"},
		{20000000000, totp.SHA512, "47863826"},
	}
	seeds := map[totp.Algorithm][]byte{
		totp.SHA1:   rfcSeedSHA1,
		totp.SHA256: rfcSeedSHA256,
		totp.SHA512: rfcSeedSHA512,
	}
	for _, tt := range tests {
		t.Run(string(tt.alg)+"/"+time.Unix(tt.unix, 0).UTC().Format(time.RFC3339), func(t *testing.T) {
			p := totp.Params{Algorithm: tt.alg, Digits: 8, Period: 30 * time.Second}
			got, err := totp.Code(seeds[tt.alg], p, p.Step(time.Unix(tt.unix, 0)))
			if err != nil {
				t.Fatalf("Code: %v", err)
			}
			if got != tt.want {
				t.Errorf("Code at %d = %q, want %q", tt.unix, got, tt.want)
			}
		})
	}
}

func TestStep(t *testing.T) {
	tests := []struct {
		period time.Duration
		unix   int64
		want   int64
	}{
		{30 * time.Second, 0, 0},
		{30 * time.Second, 29, 0},
		{30 * time.Second, 30, 1},
		{30 * time.Second, 59, 1},
		{30 * time.Second, 1111111109, 37037036},
		{30 * time.Second, 20000000000, 666666666},
		{60 * time.Second, 119, 1},
		{time.Second, 1234567890, 1234567890},
	}
	for _, tt := range tests {
		p := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: tt.period}
		if got := p.Step(time.Unix(tt.unix, 0)); got != tt.want {
			t.Errorf("Params{Period: %s}.Step(%d) = %d, want %d", tt.period, tt.unix, got, tt.want)
		}
	}
}

func TestCodeNegativeStep(t *testing.T) {
	if got, err := totp.Code(rfcSeedSHA1, totp.DefaultParams(), -1); err == nil {
		t.Errorf("Code(step -1) = %q, nil; want an error", got)
	}
}

func TestCodeDigits(t *testing.T) {
	// Six digits are the last six of the eight-digit code (RFC 4226 truncation
	// modulo 10^digits).
	p6 := totp.Params{Algorithm: totp.SHA1, Digits: 6, Period: 30 * time.Second}
	got, err := totp.Code(rfcSeedSHA1, p6, p6.Step(time.Unix(59, 0)))
	if err != nil {
		t.Fatal(err)
	}
	if want := "287082"; got != want {
		t.Errorf("6-digit code at 59 = %q, want %q", got, want)
	}
}

func TestMatch(t *testing.T) {
	p := totp.DefaultParams()
	now := time.Unix(1700000000, 0)
	cur := p.Step(now)
	code := func(step int64) string {
		t.Helper()
		c, err := totp.Code(rfcSeedSHA1, p, step)
		if err != nil {
			t.Fatalf("Code(%d): %v", step, err)
		}
		return c
	}
	type result struct {
		Step int64
		OK   bool
	}
	tests := []struct {
		name string
		code string
		skew int
		want result
	}{
		{"current step", code(cur), 1, result{cur, true}},
		{"previous step", code(cur - 1), 1, result{cur - 1, true}},
		{"next step", code(cur + 1), 1, result{cur + 1, true}},
		{"two steps back", code(cur - 2), 1, result{}},
		{"two steps ahead", code(cur + 2), 1, result{}},
		{"previous step without skew", code(cur - 1), 0, result{}},
		{"two steps back with skew 2", code(cur - 2), 2, result{cur - 2, true}},
		{"empty code", "", 1, result{}},
		{"wrong code", wrongCode(t, rfcSeedSHA1, p, now, 1), 1, result{}},
		{"wrong code without skew", wrongCode(t, rfcSeedSHA1, p, now, 0), 0, result{}},
		{"code with a trailing space", code(cur) + " ", 1, result{}},
		{"code of other digits", "0" + code(cur), 1, result{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			step, ok := totp.Match(rfcSeedSHA1, p, tt.code, now, tt.skew)
			got := result{OK: ok}
			if ok {
				got.Step = step
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Match(%q, skew %d) mismatch (-want +got):\n%s", tt.code, tt.skew, diff)
			}
		})
	}
}

// wrongCode returns a code of p's length that Match refuses at now with
// skew: it differs from the code of every step of the window, not only the
// current one.
func wrongCode(t *testing.T, secret []byte, p totp.Params, now time.Time, skew int) string {
	t.Helper()
	accepted := map[string]bool{}
	cur := p.Step(now)
	for s := max(cur-int64(skew), 0); s <= cur+int64(skew); s++ { // Match skips steps before the epoch
		c, err := totp.Code(secret, p, s)
		if err != nil {
			t.Fatalf("Code(%d): %v", s, err)
		}
		accepted[c] = true
	}
	for n := 0; ; n++ {
		if c := fmt.Sprintf("%0*d", p.Digits, n); !accepted[c] {
			return c
		}
	}
}

func TestWrongCode(t *testing.T) {
	for _, p := range []totp.Params{totp.DefaultParams(), {Algorithm: totp.SHA256, Digits: 8, Period: time.Minute}} {
		for _, now := range []time.Time{time.Unix(0, 0), time.Unix(1700000000, 0), time.Unix(57766336*30, 0)} {
			for skew := range 3 {
				c := wrongCode(t, rfcSeedSHA1, p, now, skew)
				if step, ok := totp.Match(rfcSeedSHA1, p, c, now, skew); ok || len(c) != p.Digits {
					t.Errorf("wrongCode(%s, %d digits, skew %d) = %q, which Match accepts (step %d) or has the wrong length", now.UTC(), p.Digits, skew, c, step)
				}
			}
		}
	}
}

// TestMatchLatestFirst uses a time where the same code belongs to two steps
// of the window, and checks Match reports the later one: the caller records
// the step as used, so reporting an earlier step would let the same code be
// replayed in the later one.
func TestMatchLatestFirst(t *testing.T) {
	p := totp.DefaultParams()
	// Found by search: steps 57766335 and 57766336 of the RFC SHA1 seed both
	// have the 6-digit code 251166.
	const s0, code = 57766335, "251166"
	for _, s := range []int64{s0, s0 + 1} {
		if c, err := totp.Code(rfcSeedSHA1, p, s); err != nil || c != code {
			t.Fatalf("precondition: Code(step %d) = %q, %v; want %q", s, c, err, code)
		}
	}
	for _, now := range []int64{s0, s0 + 1} {
		at := time.Unix(now*30+7, 0)
		step, ok := totp.Match(rfcSeedSHA1, p, code, at, 1)
		if !ok || step != s0+1 {
			t.Errorf("Match(%q) at step %d = %d, %v; want %d, true", code, now, step, ok, s0+1)
		}
	}
	// One step further the later step is out of the window; the earlier one
	// is the only candidate left, at skew 2.
	if step, ok := totp.Match(rfcSeedSHA1, p, code, time.Unix((s0-1)*30, 0), 2); !ok || step != s0+1 {
		t.Errorf("Match(%q) at step %d skew 2 = %d, %v; want %d, true", code, s0-1, step, ok, s0+1)
	}
}

func TestMatchBeforeEpoch(t *testing.T) {
	// A clock at the epoch makes step -1 part of the window; Match must skip
	// it, not fail or panic.
	p := totp.DefaultParams()
	c, err := totp.Code(rfcSeedSHA1, p, 0)
	if err != nil {
		t.Fatal(err)
	}
	step, ok := totp.Match(rfcSeedSHA1, p, c, time.Unix(0, 0), 1)
	if !ok || step != 0 {
		t.Errorf("Match at epoch = %d, %v; want 0, true", step, ok)
	}
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name    string
		p       totp.Params
		wantErr string // substring; "" means valid
	}{
		{"default", totp.DefaultParams(), ""},
		{"SHA256 8 digits", totp.Params{totp.SHA256, 8, 30 * time.Second}, ""},
		{"SHA512 60s", totp.Params{totp.SHA512, 6, time.Minute}, ""},
		{"1s", totp.Params{totp.SHA1, 6, time.Second}, ""},
		{"5m", totp.Params{totp.SHA1, 6, 5 * time.Minute}, ""},
		{"lower-case algorithm", totp.Params{"sha1", 6, 30 * time.Second}, "algorithm"},
		{"MD5", totp.Params{"MD5", 6, 30 * time.Second}, "algorithm"},
		{"empty algorithm", totp.Params{"", 6, 30 * time.Second}, "algorithm"},
		{"7 digits", totp.Params{totp.SHA1, 7, 30 * time.Second}, "digits"},
		{"0 digits", totp.Params{totp.SHA1, 0, 30 * time.Second}, "digits"},
		{"10 digits", totp.Params{totp.SHA1, 10, 30 * time.Second}, "digits"},
		{"zero period", totp.Params{totp.SHA1, 6, 0}, "period"},
		{"negative period", totp.Params{totp.SHA1, 6, -30 * time.Second}, "period"},
		{"sub-second period", totp.Params{totp.SHA1, 6, 500 * time.Millisecond}, "period"},
		{"fractional period", totp.Params{totp.SHA1, 6, 30*time.Second + time.Millisecond}, "period"},
		{"period over 5m", totp.Params{totp.SHA1, 6, 5*time.Minute + time.Second}, "period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Validate(%+v) = %v, want nil", tt.p, err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("Validate(%+v) = nil, want an error about %s", tt.p, tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("Validate(%+v) = %q, want it to mention %q", tt.p, err, tt.wantErr)
			}
		})
	}
}

func TestNewKey(t *testing.T) {
	tests := []struct {
		p       totp.Params
		wantAlg otp.Algorithm
		wantDig otp.Digits
	}{
		{totp.DefaultParams(), otp.AlgorithmSHA1, otp.DigitsSix},
		{totp.Params{totp.SHA256, 8, 60 * time.Second}, otp.AlgorithmSHA256, otp.DigitsEight},
		{totp.Params{totp.SHA512, 6, 30 * time.Second}, otp.AlgorithmSHA512, otp.DigitsSix},
	}
	for _, tt := range tests {
		t.Run(string(tt.p.Algorithm), func(t *testing.T) {
			seed := bytes.Repeat([]byte{0xA5}, totp.SecretSize)
			k, err := totp.NewKey(bytes.NewReader(seed), tt.p, "Example Co", "alice@example.org")
			if err != nil {
				t.Fatalf("NewKey: %v", err)
			}
			if !bytes.Equal(k.Secret, seed) {
				t.Errorf("Secret = %x, want the %d bytes read from r (%x)", k.Secret, totp.SecretSize, seed)
			}
			u, err := otp.NewKeyFromURL(k.URI)
			if err != nil {
				t.Fatalf("otp.NewKeyFromURL(%q): %v", k.URI, err)
			}
			type uriFields struct {
				Type, Issuer, Account, Secret string
				Algorithm                     otp.Algorithm
				Digits                        otp.Digits
				Period                        uint64
			}
			got := uriFields{u.Type(), u.Issuer(), u.AccountName(), u.Secret(), u.Algorithm(), u.Digits(), u.Period()}
			want := uriFields{"totp", "Example Co", "alice@example.org", k.Base32(), tt.wantAlg, tt.wantDig, uint64(tt.p.Period / time.Second)}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("URI %q fields mismatch (-want +got):\n%s", k.URI, diff)
			}
			if strings.Contains(k.Base32(), "=") {
				t.Errorf("Base32() = %q, want no padding", k.Base32())
			}
		})
	}
}

func TestNewKeyRandom(t *testing.T) {
	a, err := totp.NewKey(rand.Reader, totp.DefaultParams(), "i", "a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := totp.NewKey(rand.Reader, totp.DefaultParams(), "i", "a")
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Secret) != 20 || len(b.Secret) != 20 {
		t.Errorf("secret lengths %d, %d; want 20", len(a.Secret), len(b.Secret))
	}
	if bytes.Equal(a.Secret, b.Secret) {
		t.Errorf("two keys from crypto/rand share the secret %x", a.Secret)
	}
}

func TestNewKeyShortRead(t *testing.T) {
	_, err := totp.NewKey(bytes.NewReader(make([]byte, totp.SecretSize-1)), totp.DefaultParams(), "i", "a")
	if err == nil {
		t.Fatal("NewKey with 19 bytes of randomness = nil error, want one")
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("NewKey short read = %v, want it to wrap io.ErrUnexpectedEOF", err)
	}
}

func TestQRCode(t *testing.T) {
	k, err := totp.NewKey(rand.Reader, totp.DefaultParams(), "Example", "bob")
	if err != nil {
		t.Fatal(err)
	}
	for _, size := range []int{128, 256} {
		b, err := totp.QRCode(k.URI, size)
		if err != nil {
			t.Fatalf("QRCode(%d): %v", size, err)
		}
		if ct := http.DetectContentType(b); ct != "image/png" {
			t.Errorf("QRCode(%d) content type = %q, want image/png", size, ct)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("png.Decode: %v", err)
		}
		if got := img.Bounds().Size(); got.X != size || got.Y != size {
			t.Errorf("QRCode(%d) image is %v, want %dx%d", size, got, size, size)
		}
	}
	if _, err := totp.QRCode("otpauth://totp/%zz", 256); err == nil {
		t.Error("QRCode of an unparsable URI = nil error, want one")
	}
}

// TestCodeMatchesOathtool checks Code against an independent implementation,
// oathtool from the OATH Toolkit, for random secrets and fixed times.
func TestCodeMatchesOathtool(t *testing.T) {
	const oathtool = "/usr/bin/oathtool"
	if _, err := os.Stat(oathtool); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("oathtool is required in CI (apt-get install oathtool): %v", err)
		}
		t.Skipf("oathtool not installed: %v", err)
	}
	times := []time.Time{
		time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 29, 0, time.UTC),
		time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC),
		time.Date(2033, 5, 18, 3, 33, 20, 0, time.UTC),
		time.Date(1999, 12, 31, 23, 59, 59, 0, time.UTC),
	}
	params := []struct {
		p    totp.Params
		args []string
	}{
		{totp.Params{totp.SHA1, 6, 30 * time.Second}, []string{"--totp"}},
		{totp.Params{totp.SHA256, 8, 30 * time.Second}, []string{"--totp=SHA256", "--digits=8"}},
		{totp.Params{totp.SHA512, 8, 30 * time.Second}, []string{"--totp=SHA512", "--digits=8"}},
	}
	for _, pp := range params {
		for i := 0; i < 3; i++ {
			k, err := totp.NewKey(rand.Reader, pp.p, "Example", "alice")
			if err != nil {
				t.Fatal(err)
			}
			for _, at := range times {
				now := at.Format("2006-01-02 15:04:05 UTC")
				args := append(append([]string{}, pp.args...), "-b", k.Base32(), "--now", now)
				out, err := exec.Command(oathtool, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("oathtool %s: %v\n%s", strings.Join(args, " "), err, out)
				}
				want := strings.TrimSpace(string(out))
				got, err := totp.Code(k.Secret, pp.p, pp.p.Step(at))
				if err != nil {
					t.Fatal(err)
				}
				if got != want {
					t.Errorf("%s %s at %s: Code = %q, oathtool = %q", pp.p.Algorithm, k.Base32(), now, got, want)
				}
			}
		}
	}
}

func FuzzMatch(f *testing.F) {
	for _, s := range []string{"", "287082", "94287082", "abcdef", "28708२", "2870 82", "\x00\x00\x00\x00\x00\x00", "-28708"} {
		f.Add(s, int64(59), 1)
	}
	f.Fuzz(func(t *testing.T, code string, unix int64, skew int) {
		if skew < 0 || skew > 3 {
			skew = 1
		}
		// Keep the time in a range where steps are defined either way.
		if unix < -1<<40 || unix > 1<<40 {
			unix = 59
		}
		step, ok := totp.Match(rfcSeedSHA1, totp.DefaultParams(), code, time.Unix(unix, 0), skew)
		if !ok {
			return
		}
		if strings.Trim(code, "0123456789") != "" || len(code) != 6 {
			t.Fatalf("Match(%q) = %d, true for a code that is not six digits", code, step)
		}
		want, err := totp.Code(rfcSeedSHA1, totp.DefaultParams(), step)
		if err != nil || want != code {
			t.Fatalf("Match(%q) = step %d whose code is %q (%v)", code, step, want, err)
		}
	})
}
