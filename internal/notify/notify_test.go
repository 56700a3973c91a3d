package notify_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/boltstore"
	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/notify"
	"github.com/secondfactor/secondfactor/internal/redisstore"
	"github.com/secondfactor/secondfactor/internal/redistest"
	"github.com/secondfactor/secondfactor/internal/secret"
)

const webhookSecret = secret.String("whsec-0123456789abcdef0123456789abcdef")

// clock is the injected time, moved by the test; safe for the
// deliverer's goroutines to read.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.UnixMilli(1_790_000_000_000).UTC()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// verify is the receiver's check of the README ("Verifying a request"),
// copied from it as it stands there: a receiver written from the
// documentation accepts what the service sends.
func verify(secret []byte, header string, body []byte, now time.Time) bool {
	var t string
	var sig []byte
	for _, kv := range strings.Split(header, ",") {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case "t":
			t = v
		case "v1":
			sig, _ = hex.DecodeString(v)
		}
	}
	sec, err := strconv.ParseInt(t, 10, 64)
	if err != nil || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(t + "."))
	m.Write(body)
	return hmac.Equal(sig, m.Sum(nil))
}

// TestREADMEVerify: the verify function above is the README's.
func TestREADMEVerify(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("notify_test.go")
	if err != nil {
		t.Fatal(err)
	}
	_, fn, ok := strings.Cut(string(src), "\nfunc verify(")
	fn, _, _ = strings.Cut(fn, "\n}\n")
	if fn = "func verify(" + fn + "\n}\n"; !ok || !strings.Contains(string(readme), "```go\n"+fn+"```") {
		t.Errorf("the README's verify differs from this test's:\n%s", fn)
	}
}

// delivery is one request the receiver got.
type delivery struct {
	id        string
	body      []byte
	signature string
	payload   notify.Payload
	at        time.Time // the receiver's clock when it came
}

// receiver is a webhook receiver on loopback that records what it gets
// and answers with status (200 by default).
type receiver struct {
	t      *testing.T
	clock  *clock
	mu     sync.Mutex
	got    []delivery
	status int
	srv    *httptest.Server
}

// newReceiver starts a receiver; down, it listens nowhere until up is
// called, and its URL refuses connections.
func newReceiver(t *testing.T, c *clock, down bool) (*receiver, string) {
	t.Helper()
	r := &receiver{t: t, clock: c, status: http.StatusOK}
	r.srv = httptest.NewUnstartedServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	url := "http://" + r.srv.Listener.Addr().String()
	if down {
		if err := r.srv.Listener.Close(); err != nil {
			t.Fatal(err)
		}
	} else {
		r.srv.Start()
	}
	return r, url
}

// up starts a receiver made down, on the address of its URL.
func (r *receiver) up(url string) {
	r.t.Helper()
	l, err := net.Listen("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.srv.Listener = l
	r.srv.Start()
}

func (r *receiver) setStatus(code int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.status = code
}

func (r *receiver) serve(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		r.t.Error(err)
		return
	}
	d := delivery{id: req.Header.Get(notify.HeaderEventID), body: body, signature: req.Header.Get(notify.HeaderSignature), at: r.clock.Now()}
	if err := json.Unmarshal(body, &d.payload); err != nil {
		r.t.Errorf("body %s: %v", body, err)
	}
	if req.Method != http.MethodPost || req.Header.Get("Content-Type") != "application/json" {
		r.t.Errorf("request %s with Content-Type %q, want a JSON POST", req.Method, req.Header.Get("Content-Type"))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, d)
	w.WriteHeader(r.status)
}

// deliveries returns what the receiver got, checking each request: a
// valid signature when it came, the id header that of the body.
func (r *receiver) deliveries() []delivery {
	r.t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range r.got {
		if !verify([]byte(webhookSecret.Reveal()), d.signature, d.body, d.at) {
			r.t.Errorf("delivery %s: signature %q does not verify", d.id, d.signature)
		}
		if d.id != d.payload.ID {
			r.t.Errorf("delivery with header id %q and body id %q", d.id, d.payload.ID)
		}
	}
	return slices.Clone(r.got)
}

// byID counts the deliveries of each id, and fails the test if two of one
// id differ in their body.
func byID(t *testing.T, ds []delivery) map[string]int {
	t.Helper()
	n := map[string]int{}
	first := map[string][]byte{}
	for _, d := range ds {
		n[d.id]++
		if b, ok := first[d.id]; ok && !bytes.Equal(b, d.body) {
			t.Errorf("two deliveries of %s differ:\n%s\n%s", d.id, b, d.body)
		}
		first[d.id] = d.body
	}
	return n
}

// backend is a store that a test opens, closes and opens again, as a
// service restarting on it.
type backend struct {
	name string
	// open returns a function that opens the store anew each call, and
	// the function that closes what it opened.
	open func(t *testing.T) func() (mfa.Store, func())
}

func backends(t *testing.T) []backend {
	return []backend{
		{"bolt", func(t *testing.T) func() (mfa.Store, func()) {
			path := filepath.Join(t.TempDir(), "sf.db")
			return func() (mfa.Store, func()) {
				s := openBolt(t, path)
				return s, func() { closeBolt(t, s) }
			}
		}},
		{"redis", func(t *testing.T) func() (mfa.Store, func()) {
			addr := redistest.Start(t)
			return func() (mfa.Store, func()) {
				rdb := redis.NewClient(&redis.Options{Addr: addr})
				return redisstore.New(rdb), func() {
					if err := rdb.Close(); err != nil {
						t.Error(err)
					}
				}
			}
		}},
	}
}

func openBolt(t *testing.T, path string) *boltstore.Store {
	t.Helper()
	s, err := boltstore.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func closeBolt(t *testing.T, s *boltstore.Store) {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

func newDeliverer(t *testing.T, out notify.Outbox, url string, c *clock, reg prometheus.Registerer) *notify.Deliverer {
	t.Helper()
	d, err := notify.New(notify.Options{
		Outbox: out, URL: url, Secret: webhookSecret, Timeout: time.Second, Now: c.Now,
		Logger: slog.New(slog.DiscardHandler), Metrics: reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// appendEvents appends, at the clock's time, a notifiable event of each
// kind for each user, and a verification (not notifiable), and returns
// the ids of the notifiable ones.
func appendEvents(t *testing.T, s mfa.Store, c *clock, users ...string) []string {
	t.Helper()
	var ids []string
	for _, u := range users {
		for _, e := range []mfa.Event{
			{Action: mfa.ActionFactorAdded, FactorID: "00000000000000a1", Result: "totp", Actor: "portal", ClientIP: "203.0.113.9", UserAgent: "Firefox"},
			{Action: mfa.ActionVerifyTOTP, Result: mfa.ResultAccepted, FactorID: "00000000000000a1"},
			{Action: mfa.ActionUserLocked, Reason: "too many failed attempts"},
			{Action: mfa.ActionVerifyRecovery, Result: mfa.ResultAccepted},
			{Action: mfa.ActionUserReset, Actor: "ops-alice", Reason: "lost phone, ticket 4711"},
		} {
			e.UserID, e.Time = u, c.Now()
			got, err := s.AppendEvent(t.Context(), e)
			if err != nil {
				t.Fatal(err)
			}
			if mfa.Notifiable(got) {
				ids = append(ids, got.ID())
			}
		}
	}
	return ids
}

func runOnce(t *testing.T, d *notify.Deliverer) notify.Result {
	t.Helper()
	r, err := d.RunOnce(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// drain runs d until a run claims nothing.
func drain(t *testing.T, d *notify.Deliverer) {
	t.Helper()
	for runOnce(t, d).Claimed > 0 {
	}
}

// metric reads the value of one sample of reg's exposition, e.g.
// `secondfactor_webhook_deliveries_total{outcome="delivered"}`.
func metric(t *testing.T, reg *prometheus.Registry, sample string) float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for line := range strings.Lines(rec.Body.String()) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), sample+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no sample %s in:\n%s", sample, rec.Body.String())
	return 0
}

// TestReceiverDownThenRestart: with the receiver down, nothing is lost:
// the notifications stay in the outbox, rescheduled with back-off; the
// service restarts on the same file (one replica crashed while holding a
// lease); then the receiver comes up and gets every notification, signed,
// once per id except the one it answered with an error after taking it.
func TestReceiverDownThenRestart(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) { testReceiverDownThenRestart(t, b.open(t)) })
	}
}

func testReceiverDownThenRestart(t *testing.T, open func() (mfa.Store, func())) {
	c := newClock()
	rcv, url := newReceiver(t, c, true)

	s, closeStore := open()
	ids := appendEvents(t, s, c, "dr-martin", "dr-durand")
	reg := prometheus.NewRegistry()
	d := newDeliverer(t, s, url, c, reg)
	r := runOnce(t, d)
	if r.Claimed != len(ids) || r.Failed != len(ids) {
		t.Fatalf("first run, receiver down: %+v, want %d claimed and failed", r, len(ids))
	}
	if got := metric(t, reg, "secondfactor_webhook_backlog"); got != float64(len(ids)) {
		t.Errorf("backlog %v, want %d", got, len(ids))
	}
	if got := metric(t, reg, `secondfactor_webhook_deliveries_total{outcome="failed"}`); got != float64(len(ids)) {
		t.Errorf("failed deliveries %v, want %d", got, len(ids))
	}
	// Not due again before the back-off.
	c.Advance(notify.FirstBackoff - time.Millisecond)
	if r := runOnce(t, d); r.Claimed != 0 {
		t.Fatalf("run before the back-off ended: %+v", r)
	}
	// A replica claims one more notification and crashes with its lease.
	c.Advance(time.Millisecond)
	held, err := s.ClaimNotifications(t.Context(), c.Now(), 10*time.Minute, 1)
	if err != nil || len(held) != 1 {
		t.Fatalf("crashing replica's claim: %v, %v", held, err)
	}
	if r := runOnce(t, d); r.Claimed != len(ids)-1 || r.Failed != len(ids)-1 {
		t.Fatalf("second run, receiver down: %+v, want the %d not held", r, len(ids)-1)
	}
	closeStore()

	// The service restarts on the same store, the receiver comes up.
	s, closeStore = open()
	t.Cleanup(closeStore)
	rcv.up(url)
	reg = prometheus.NewRegistry()
	d = newDeliverer(t, s, url, c, reg)
	if r := runOnce(t, d); r.Claimed != 0 {
		t.Fatalf("run after the restart, before the back-offs ended: %+v", r)
	}
	c.Advance(2 * notify.FirstBackoff)
	// The receiver takes the first request but answers 500: the sender
	// must send it again, with the same id and body.
	rcv.setStatus(http.StatusInternalServerError)
	if r := runOnce(t, d); r.Claimed != len(ids)-1 || r.Failed != len(ids)-1 {
		t.Fatalf("run with the receiver answering 500: %+v", r)
	}
	rcv.setStatus(http.StatusNoContent)
	c.Advance(notify.Backoff(3))
	if r := runOnce(t, d); r.Delivered != len(ids)-1 {
		t.Fatalf("run with the receiver up: %+v, want %d delivered", r, len(ids)-1)
	}
	// The crashed replica's lease ends: another takes it over.
	drain(t, d)
	if n := byID(t, rcv.deliveries())[held[0].Event.ID()]; n != 0 {
		t.Fatalf("%s delivered %d times while the crashed replica's lease held", held[0].Event.ID(), n)
	}
	c.Advance(10 * time.Minute)
	drain(t, d)

	n := byID(t, rcv.deliveries())
	for _, id := range ids {
		want := 2 // the 500, then the 204
		if id == held[0].Event.ID() {
			want = 1
		}
		if n[id] != want {
			t.Errorf("%s delivered %d times, want %d", id, n[id], want)
		}
	}
	if len(n) != len(ids) {
		t.Errorf("delivered ids %v, want %v", n, ids)
	}
	if got := metric(t, reg, "secondfactor_webhook_backlog"); got != 0 {
		t.Errorf("backlog after delivery: %v, want 0", got)
	}
	if got := metric(t, reg, `secondfactor_webhook_deliveries_total{outcome="delivered"}`); got != float64(len(ids)) {
		t.Errorf("delivered %v, want %d", got, len(ids))
	}
}

// TestPayload: the body names the event and what a user should hear, and
// holds no hash of the chain.
func TestPayload(t *testing.T) {
	c := newClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "sf.db"))
	t.Cleanup(func() { closeBolt(t, s) })
	rcv, url := newReceiver(t, c, false)
	ids := appendEvents(t, s, c, "dr-martin")
	drain(t, newDeliverer(t, s, url, c, nil))
	ds := rcv.deliveries()
	if len(ds) != len(ids) {
		t.Fatalf("%d deliveries, want %d", len(ds), len(ids))
	}
	slices.SortFunc(ds, func(a, b delivery) int { return strings.Compare(a.id, b.id) })
	want := notify.Payload{
		ID: "dr-martin/1", Action: mfa.ActionFactorAdded, Time: c.Now(), UserID: "dr-martin", FactorID: "00000000000000a1",
		Result: "totp", Actor: "portal", ClientIP: "203.0.113.9", UserAgent: "Firefox",
	}
	if ds[0].payload != want {
		t.Errorf("payload %+v, want %+v", ds[0].payload, want)
	}
	var raw map[string]any
	if err := json.Unmarshal(ds[3].body, &raw); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for k := range raw {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	if want := []string{"action", "actor", "id", "reason", "time", "user_id"}; !slices.Equal(keys, want) {
		t.Errorf("keys of a user.reset body: %v, want %v", keys, want)
	}
}

// TestBackoffAndGiveUp: a receiver that always fails gets the notification
// after 10 s, 20 s, 40 s, ... up to an hour apart, and never again once
// three days have passed since the event: it is dropped, and counted.
func TestBackoffAndGiveUp(t *testing.T) {
	c := newClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "sf.db"))
	t.Cleanup(func() { closeBolt(t, s) })
	rcv, url := newReceiver(t, c, false)
	rcv.setStatus(http.StatusBadGateway)
	start := c.Now()
	if _, err := s.AppendEvent(t.Context(), mfa.Event{UserID: "dr-martin", Time: start, Action: mfa.ActionFactorRemoved}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	d := newDeliverer(t, s, url, c, reg)
	attempts := 0
	for {
		r := runOnce(t, d)
		if r.Claimed == 0 {
			break
		}
		attempts++
		if r.GivenUp == 1 {
			break
		}
		wait := notify.Backoff(attempts)
		if want := min(10*time.Second<<(attempts-1), time.Hour); attempts < 20 && wait != want {
			t.Fatalf("back-off after %d failures: %s, want %s", attempts, wait, want)
		}
		c.Advance(wait - time.Millisecond)
		if r := runOnce(t, d); r.Claimed != 0 {
			t.Fatalf("claimed %s before the back-off of attempt %d ended", time.Millisecond, attempts)
		}
		c.Advance(time.Millisecond)
	}
	if elapsed := c.Now().Sub(start); elapsed > notify.GiveUp || elapsed < notify.GiveUp-time.Hour {
		t.Errorf("given up %s after the event, want within the hour before %s", elapsed, notify.GiveUp)
	}
	if n := len(rcv.deliveries()); n != attempts {
		t.Errorf("receiver got %d requests, want %d", n, attempts)
	}
	if got := metric(t, reg, `secondfactor_webhook_deliveries_total{outcome="given_up"}`); got != 1 {
		t.Errorf("given up %v, want 1", got)
	}
	c.Advance(notify.GiveUp)
	if r := runOnce(t, d); r.Claimed != 0 {
		t.Fatalf("run after giving up: %+v", r)
	}
	if got := metric(t, reg, "secondfactor_webhook_backlog"); got != 0 {
		t.Errorf("backlog %v, want 0", got)
	}
}

// TestNotDelivered: a redirect, a client error and an answer slower than
// the timeout are failures, retried.
func TestNotDelivered(t *testing.T) {
	c := newClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "sf.db"))
	t.Cleanup(func() { closeBolt(t, s) })
	release := make(chan struct{})
	var mu sync.Mutex
	var answers []int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		code := answers[0]
		answers = answers[1:]
		mu.Unlock()
		if code == 0 { // hang until the client gives up
			select {
			case <-r.Context().Done():
			case <-release:
			}
			return
		}
		if code == http.StatusFound {
			w.Header().Set("Location", "/elsewhere")
		}
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })
	if _, err := s.AppendEvent(t.Context(), mfa.Event{UserID: "dr-martin", Time: c.Now(), Action: mfa.ActionFactorSuspended}); err != nil {
		t.Fatal(err)
	}
	d := newDeliverer(t, s, srv.URL, c, nil)
	for i, code := range []int{http.StatusFound, http.StatusBadRequest, 0, http.StatusOK} {
		mu.Lock()
		answers = append(answers, code)
		mu.Unlock()
		r := runOnce(t, d)
		if want := (notify.Result{Claimed: 1, Failed: 1}); code == http.StatusOK {
			if r != (notify.Result{Claimed: 1, Delivered: 1}) {
				t.Fatalf("answer 200: %+v", r)
			}
		} else if r != want {
			t.Fatalf("answer %d: %+v, want %+v", code, r, want)
		}
		c.Advance(notify.Backoff(i + 1))
	}
}

// TestNew: settings refused, each named.
func TestNew(t *testing.T) {
	s := openBolt(t, filepath.Join(t.TempDir(), "sf.db"))
	t.Cleanup(func() { closeBolt(t, s) })
	for _, c := range []struct {
		url     string
		secret  secret.String
		timeout time.Duration
		want    string
	}{
		{"https://portal.example/hooks/mfa", webhookSecret, 0, ""},
		{"http://127.0.0.1:8080/hook", webhookSecret, time.Minute, ""},
		{"http://localhost/hook", webhookSecret, time.Second, ""},
		{"http://portal.example/hook", webhookSecret, 0, "webhook url is http to a host that is not loopback: want https"},
		{"ftp://portal.example/hook", webhookSecret, 0, "webhook url is not an absolute https URL"},
		{"/hook", webhookSecret, 0, "webhook url is not an absolute https URL"},
		{"https://user:pw@portal.example/hook", webhookSecret, 0, "webhook url holds credentials"},
		{"https://portal.example/hook", "short", 0, "webhook secret of 5 bytes: want at least 32"},
		{"https://portal.example/hook", webhookSecret, 500 * time.Millisecond, "webhook timeout 500ms: want 1s to 1m"},
	} {
		_, err := notify.New(notify.Options{Outbox: s, URL: c.url, Secret: c.secret, Timeout: c.timeout})
		if c.want == "" && err != nil || c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("New(%q, %d-byte secret, %s) = %v, want %q", c.url, len(c.secret), c.timeout, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), webhookSecret.Reveal()) {
			t.Errorf("error shows the secret: %v", err)
		}
	}
}

// TestSignature: the receiver's check accepts what Signature makes, and
// refuses another body, another secret, an old or future timestamp.
func TestSignature(t *testing.T) {
	key := []byte(webhookSecret.Reveal())
	now := time.Unix(1_790_000_000, 0)
	body := []byte(`{"id":"dr-martin/1","action":"factor.added"}`)
	sig := notify.Signature(key, now, body)
	if want := "t=1790000000,v1="; !strings.HasPrefix(sig, want) || len(sig) != len(want)+64 {
		t.Fatalf("signature %q, want %s<64 hex digits>", sig, want)
	}
	for _, c := range []struct {
		name   string
		key    []byte
		header string
		body   []byte
		now    time.Time
		ok     bool
	}{
		{"as sent", key, sig, body, now, true},
		{"4 min later", key, sig, body, now.Add(4 * time.Minute), true},
		{"6 min later: a replay", key, sig, body, now.Add(6 * time.Minute), false},
		{"6 min early", key, sig, body, now.Add(-6 * time.Minute), false},
		{"another body", key, sig, []byte(`{"id":"dr-martin/1","action":"factor.removed"}`), now, false},
		{"another secret", []byte("another secret, also 32 bytes..."), sig, body, now, false},
		{"timestamp changed", key, strings.Replace(sig, "t=1790000000", "t=1790000100", 1), body, now, false},
		{"no v1", key, "t=1790000000", body, now, false},
	} {
		if got := verify(c.key, c.header, c.body, c.now); got != c.ok {
			t.Errorf("%s: verify = %v, want %v", c.name, got, c.ok)
		}
	}
}

// TestTwoReplicasOneRedis: two deliverers, each on its own client of one
// Redis as two replicas are, running at once until the outbox is empty,
// deliver each notification once.
func TestTwoReplicasOneRedis(t *testing.T) {
	addr := redistest.Start(t)
	c := newClock()
	rcv, url := newReceiver(t, c, false)
	var ds []*notify.Deliverer
	var ids []string
	for i := range 2 {
		s := redisstore.New(redistest.Client(t, addr))
		for j := range 5 {
			ids = append(ids, appendEvents(t, s, c, fmt.Sprintf("dr-%d-%d", i, j))...)
		}
		ds = append(ds, newDeliverer(t, s, url, c, nil))
	}
	if len(ids) <= 2*notify.Batch {
		t.Fatalf("%d notifications: want more than two batches, so that the replicas race for several", len(ids))
	}
	for {
		var wg sync.WaitGroup
		claimed := make([]int, len(ds))
		for i, d := range ds {
			wg.Go(func() {
				r, err := d.RunOnce(t.Context())
				if err != nil {
					t.Error(err)
				}
				if r.Failed+r.GivenUp != 0 {
					t.Errorf("replica %d: %+v, want every claimed one delivered", i, r)
				}
				claimed[i] = r.Claimed
			})
		}
		wg.Wait()
		if t.Failed() {
			return
		}
		if claimed[0]+claimed[1] == 0 {
			break
		}
	}
	n := byID(t, rcv.deliveries())
	for _, id := range ids {
		if n[id] != 1 {
			t.Errorf("%s delivered %d times, want once", id, n[id])
		}
	}
	if len(n) != len(ids) {
		t.Errorf("%d ids delivered, want %d", len(n), len(ids))
	}
}

// TestRun: Run delivers what is due without being driven, and returns
// once its context ends.
func TestRun(t *testing.T) {
	c := newClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "sf.db"))
	t.Cleanup(func() { closeBolt(t, s) })
	got := make(chan string, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(notify.HeaderEventID)
	}))
	t.Cleanup(srv.Close)
	ids := appendEvents(t, s, c, "dr-martin")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		newDeliverer(t, s, srv.URL, c, nil).Run(ctx)
	}()
	var delivered []string
	for range ids {
		select {
		case id := <-got:
			delivered = append(delivered, id)
		case <-time.After(10 * time.Second):
			t.Fatalf("delivered %v after 10 s, want %v", delivered, ids)
		}
	}
	cancel()
	<-done
	slices.Sort(delivered)
	if !slices.Equal(delivered, ids) {
		t.Errorf("delivered %v, want %v", delivered, ids)
	}
}

// TestHTTPS: a receiver over TLS gets the notification, and one whose
// certificate the deliverer does not trust does not.
func TestHTTPS(t *testing.T) {
	c := newClock()
	s := openBolt(t, filepath.Join(t.TempDir(), "sf.db"))
	t.Cleanup(func() { closeBolt(t, s) })
	got := make(chan string, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		got <- r.Header.Get(notify.HeaderEventID)
	}))
	t.Cleanup(srv.Close)
	ids := appendEvents(t, s, c, "dr-martin")
	for _, id := range ids[1:] { // one is enough
		if err := s.CompleteNotification(t.Context(), id); err != nil {
			t.Fatal(err)
		}
	}
	untrusting := newDeliverer(t, s, srv.URL, c, nil)
	if r := runOnce(t, untrusting); r.Failed != 1 {
		t.Fatalf("a receiver with an unknown certificate: %+v, want a failure", r)
	}
	c.Advance(notify.FirstBackoff)
	d, err := notify.New(notify.Options{Outbox: s, URL: srv.URL, Secret: webhookSecret, Now: c.Now, Transport: srv.Client().Transport})
	if err != nil {
		t.Fatal(err)
	}
	if r := runOnce(t, d); r.Delivered != 1 || <-got != ids[0] {
		t.Fatalf("a trusted receiver over TLS: %+v", r)
	}
}
