// Package notify delivers the store's outbox of notifications (mfa.Outbox)
// to a webhook, so that the portal learns at once, and can tell the
// professional, that a factor was added, removed or suspended, that the
// account was reset or locked, that a recovery code was used.
//
// A Deliverer claims due notifications every second (a lease: one replica
// at a time sends each), POSTs each as signed JSON, completes it on a 2xx
// answer and otherwise makes it due again after an exponential back-off,
// until it gives up on a notification three days after its event. Delivery
// is at least once: a receiver de-duplicates by the event id.
//
// The request (see the README, "Webhooks"):
//
//	POST <url>
//	Content-Type: application/json
//	Secondfactor-Event-Id: <user>/<seq>
//	Secondfactor-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>
//
// The body is a Payload; it holds no secret.
package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
)

// The headers of a webhook request.
const (
	HeaderEventID   = "Secondfactor-Event-Id"
	HeaderSignature = "Secondfactor-Signature"
)

// Defaults and bounds of the delivery.
const (
	// DefaultTimeout bounds one POST, answer included.
	DefaultTimeout = 10 * time.Second
	// MinSecret is the shortest secret accepted, in bytes.
	MinSecret = 32
	// Interval is how often Run claims due notifications.
	Interval = time.Second
	// FirstBackoff is the wait after a first failed attempt; it doubles
	// with each next failure up to MaxBackoff.
	FirstBackoff = 10 * time.Second
	// MaxBackoff is the longest wait between two attempts.
	MaxBackoff = time.Hour
	// GiveUp is how long after its event a notification is given up (and
	// logged) rather than tried again.
	GiveUp = 72 * time.Hour
	// Batch is how many notifications one RunOnce claims and sends, at
	// once.
	Batch = 16
	// maxAnswer is how much of an answer's body is read (and dropped), so
	// that the connection can be reused.
	maxAnswer = 4 << 10
)

// Outbox is what a Deliverer needs of the store.
type Outbox interface {
	ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, max int) ([]mfa.Notification, error)
	CompleteNotification(ctx context.Context, id string) error
	RetryNotification(ctx context.Context, id string, claim uint64, next time.Time, attempts int) error
	PendingNotifications(ctx context.Context) (int, error)
}

var _ Outbox = mfa.Store(nil)

// Options configure a Deliverer.
type Options struct {
	Outbox Outbox
	// URL receives the notifications: https, or http on a loopback host.
	URL string
	// Secret signs each request; at least MinSecret bytes.
	Secret secret.String
	// Timeout bounds one POST; DefaultTimeout if 0.
	Timeout time.Duration
	Now     func() time.Time // the clock; time.Now if nil
	Logger  *slog.Logger     // nil: discard
	// Metrics, if set, registers the backlog gauge and the deliveries
	// counter.
	Metrics prometheus.Registerer
	// Transport sends the requests; if nil, one like http.DefaultTransport
	// without its proxy from the environment, with TLS 1.2 or later.
	Transport http.RoundTripper
}

// Deliverer sends the outbox's notifications to the webhook. Its methods
// are safe for concurrent use.
type Deliverer struct {
	out     Outbox
	url     string
	key     []byte
	client  *http.Client
	timeout time.Duration
	lease   time.Duration
	now     func() time.Time
	log     *slog.Logger

	backlog    prometheus.Gauge
	deliveries *prometheus.CounterVec
}

// New checks o and returns a Deliverer. It refuses a URL that is not
// absolute http(s), http to a host that is not loopback, a secret shorter
// than MinSecret bytes, and a timeout outside 1 s to 1 min.
func New(o Options) (*Deliverer, error) {
	if err := Check(o.URL, o.Secret, o.Timeout); err != nil {
		return nil, err
	}
	if o.Outbox == nil {
		return nil, errors.New("notify: no outbox")
	}
	d := &Deliverer{
		out: o.Outbox, url: o.URL, key: []byte(o.Secret.Reveal()),
		timeout: o.Timeout, now: o.Now, log: o.Logger,
		backlog: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "secondfactor_webhook_backlog",
			Help: "Notifications waiting in the outbox for the webhook, leased or not, of every replica.",
		}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "secondfactor_webhook_deliveries_total",
			Help: "Webhook delivery attempts by outcome: delivered (2xx), failed (to be retried), given_up.",
		}, []string{"outcome"}),
	}
	if d.timeout == 0 {
		d.timeout = DefaultTimeout
	}
	// A batch is sent at once, so a lease outlives its slowest request,
	// with room for the store calls around it.
	d.lease = 3 * d.timeout
	if d.now == nil {
		d.now = time.Now
	}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	transport := o.Transport
	if transport == nil {
		// No proxy from the environment (the configuration is the only
		// reader of it): the URL is reached directly, over TLS 1.2 or later.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.Proxy = nil
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		transport = t
	}
	d.client = &http.Client{
		Transport: transport,
		Timeout:   d.timeout,
		// A redirect is an answer like another: not a 2xx, so a failure.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	for _, o := range []string{outcomeDelivered, outcomeFailed, outcomeGivenUp} {
		d.deliveries.WithLabelValues(o)
	}
	if o.Metrics != nil {
		if err := errors.Join(o.Metrics.Register(d.backlog), o.Metrics.Register(d.deliveries)); err != nil {
			return nil, fmt.Errorf("notify: metrics: %w", err)
		}
	}
	return d, nil
}

// Check checks a webhook's settings as New does, for the configuration to
// report them at start-up, every refused one at once, each a
// *mfa.SettingError ("webhook url", "webhook secret", "webhook timeout"):
// an absolute http(s) URL without credentials, http only to a loopback
// host; a secret of at least MinSecret bytes; a timeout of 0 (the default)
// or 1 s to 1 min. No error shows the URL or the secret.
func Check(rawURL string, key secret.String, timeout time.Duration) error {
	var errs []error
	bad := func(setting, format string, args ...any) {
		errs = append(errs, &mfa.SettingError{Setting: setting, Reason: fmt.Sprintf(format, args...)})
	}
	u, err := url.Parse(rawURL)
	switch {
	case err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
		bad("webhook url", "is not an absolute https URL")
	case u.Scheme == "http" && !loopback(u.Hostname()):
		bad("webhook url", "is http to a host that is not loopback: want https")
	case u.User != nil:
		bad("webhook url", "holds credentials: the signature authenticates the sender")
	}
	if len(key) < MinSecret {
		bad("webhook secret", "of %d bytes: want at least %d", len(key), MinSecret)
	}
	if timeout != 0 && (timeout < time.Second || timeout > time.Minute) {
		bad("webhook timeout", "%s: want 1s to 1m", timeout)
	}
	return errors.Join(errs...)
}

// The outcomes of a delivery attempt, the label of the deliveries counter.
const (
	outcomeDelivered = "delivered"
	outcomeFailed    = "failed"
	outcomeGivenUp   = "given_up"
)

// Run claims and sends due notifications every Interval, and at once again
// after a full batch, until ctx ends. A batch in flight when ctx ends is
// finished (each request is bounded by the timeout), so that its
// notifications are completed or rescheduled rather than left leased.
func (d *Deliverer) Run(ctx context.Context) {
	t := time.NewTicker(Interval)
	defer t.Stop()
	for {
		r, err := d.RunOnce(context.WithoutCancel(ctx))
		if err != nil {
			d.log.LogAttrs(ctx, slog.LevelError, "webhook: claim notifications", slog.String("error", err.Error()))
		}
		if r.Claimed == Batch && err == nil && ctx.Err() == nil {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Result counts what one RunOnce did.
type Result struct {
	Claimed   int // notifications claimed
	Delivered int // answered with a 2xx and completed
	Failed    int // to be tried again
	GivenUp   int // dropped: GiveUp after their event
}

// RunOnce claims up to Batch due notifications, sends them at once and
// waits for every answer, completes the delivered ones and reschedules the
// others, then sets the backlog gauge. An error is one of the store's in
// the claim or the count; one of a single notification is logged, and the
// notification is tried again when its lease ends.
func (d *Deliverer) RunOnce(ctx context.Context) (Result, error) {
	ns, err := d.out.ClaimNotifications(ctx, d.now(), d.lease, Batch)
	if err != nil {
		return Result{}, fmt.Errorf("notify: %w", err)
	}
	r := Result{Claimed: len(ns)}
	outcomes := make([]string, len(ns))
	var wg sync.WaitGroup
	for i, n := range ns {
		wg.Go(func() { outcomes[i] = d.deliver(ctx, n) })
	}
	wg.Wait()
	for _, o := range outcomes {
		switch o {
		case outcomeDelivered:
			r.Delivered++
		case outcomeFailed:
			r.Failed++
		case outcomeGivenUp:
			r.GivenUp++
		}
	}
	pending, err := d.out.PendingNotifications(ctx)
	if err != nil {
		return r, fmt.Errorf("notify: %w", err)
	}
	d.backlog.Set(float64(pending))
	return r, nil
}

// deliver sends n and records the outcome in the store; it returns the
// outcome, "" if the store could not record it.
func (d *Deliverer) deliver(ctx context.Context, n mfa.Notification) string {
	id := n.Event.ID()
	log := d.log.With("event_id", id, "action", n.Event.Action, "user_id", n.Event.UserID, "attempt", n.Attempts+1)
	status, err := d.post(ctx, n.Event)
	if err == nil {
		d.deliveries.WithLabelValues(outcomeDelivered).Inc()
		log.Info("webhook: delivered", "status", status)
		if err := d.out.CompleteNotification(ctx, id); err != nil {
			log.Error("webhook: delivered, but not completed in the outbox: it will be sent again", "error", err)
			return ""
		}
		return outcomeDelivered
	}
	attempts := n.Attempts + 1
	now := d.now()
	next := now.Add(Backoff(attempts))
	if next.Sub(n.Event.Time) > GiveUp {
		d.deliveries.WithLabelValues(outcomeGivenUp).Inc()
		log.Error("webhook: GIVEN UP: the notification is dropped, the portal never received it",
			"status", status, "error", err.Error(), "event_time", n.Event.Time)
		if err := d.out.CompleteNotification(ctx, id); err != nil {
			log.Error("webhook: given up, but not removed from the outbox", "error", err)
			return ""
		}
		return outcomeGivenUp
	}
	d.deliveries.WithLabelValues(outcomeFailed).Inc()
	log.Warn("webhook: delivery failed, will retry", "status", status, "error", err.Error(), "next_attempt", next)
	switch err := d.out.RetryNotification(ctx, id, n.Claim, next, attempts); {
	case errors.Is(err, mfa.ErrConflict), errors.Is(err, mfa.ErrNotFound):
		log.Info("webhook: another replica took the notification over meanwhile", "error", err)
	case err != nil:
		log.Error("webhook: failure not recorded in the outbox: retried when the lease ends", "error", err)
		return ""
	}
	return outcomeFailed
}

// Backoff is the wait after the attempts-th failed attempt in a row:
// FirstBackoff, doubling, at most MaxBackoff.
func Backoff(attempts int) time.Duration {
	d := FirstBackoff
	for i := 1; i < attempts && d < MaxBackoff; i++ {
		d *= 2
	}
	return min(d, MaxBackoff)
}

// post sends e and returns the answer's status code, with an error unless
// it is 2xx. The error never holds the URL (which may carry a token).
func (d *Deliverer) post(ctx context.Context, e mfa.Event) (int, error) {
	body, err := json.Marshal(PayloadOf(e))
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return 0, errors.New("bad webhook URL")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "secondfactor-webhook/1")
	req.Header.Set(HeaderEventID, e.ID())
	req.Header.Set(HeaderSignature, Signature(d.key, d.now(), body))
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswer))
	_ = resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp.StatusCode, fmt.Errorf("answered %s", resp.Status)
	}
	return resp.StatusCode, nil
}

// Signature is the value of the Secondfactor-Signature header of body sent
// at t: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "<unix seconds>.<body>"
// under key>".
func Signature(key []byte, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	m := hmac.New(sha256.New, key)
	m.Write([]byte(ts))
	m.Write([]byte("."))
	m.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(m.Sum(nil))
}

// Payload is the JSON body of a webhook request: the audit event, without
// its chain hashes. It holds no secret (no code, token, key or hash of
// one). Retries of a notification send the same body.
type Payload struct {
	// ID names the event, "<user>/<seq>": the same for every attempt, so
	// a receiver de-duplicates by it.
	ID string `json:"id"`
	// Action is what happened: factor.added, factor.removed,
	// factor.suspended, factor.enabled, user.reset, user.locked,
	// verify.recovery (a recovery code was used), recovery.regenerated,
	// activation.issued.
	Action    mfa.Action `json:"action"`
	Time      time.Time  `json:"time"`
	UserID    string     `json:"user_id"`
	FactorID  string     `json:"factor_id,omitempty"`
	Result    string     `json:"result,omitempty"`
	Reason    string     `json:"reason,omitempty"`
	Actor     string     `json:"actor,omitempty"`
	ClientIP  string     `json:"client_ip,omitempty"`
	UserAgent string     `json:"user_agent,omitempty"`
	RequestID string     `json:"request_id,omitempty"`
}

// PayloadOf is the body of the notification of e.
func PayloadOf(e mfa.Event) Payload {
	return Payload{
		ID: e.ID(), Action: e.Action, Time: e.Time.UTC(), UserID: e.UserID, FactorID: e.FactorID,
		Result: e.Result, Reason: e.Reason, Actor: e.Actor, ClientIP: e.ClientIP, UserAgent: e.UserAgent,
		RequestID: e.RequestID,
	}
}

// loopback reports whether host names this machine only.
func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
