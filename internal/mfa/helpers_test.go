package mfa_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/secondfactor/secondfactor/internal/mfa"
	"github.com/secondfactor/secondfactor/internal/secret"
	"github.com/secondfactor/secondfactor/internal/webauthntest"
)

// The callers of the tests, as the edge would set them in the context.
var (
	adminOrigin  = mfa.Origin{Actor: "alice-admin", ClientIP: "10.0.0.7", UserAgent: "secondfactor-cli", RequestID: "req-admin"}
	portalOrigin = mfa.Origin{Actor: "portal", ClientIP: "10.0.0.2", UserAgent: "grpc-go", RequestID: "req-portal"}
	// browser is the end user's browser as the portal saw it.
	browser = mfa.Client{IP: "203.0.113.9", UserAgent: "Mozilla/5.0 Firefox/140.0"}
)

func asAdmin(t *testing.T) context.Context  { return mfa.WithOrigin(t.Context(), adminOrigin) }
func asPortal(t *testing.T) context.Context { return mfa.WithOrigin(t.Context(), portalOrigin) }

// origin is the page origin the relying party of newEnv allows.
const origin = "https://portal.example"

// registerKey registers a new software authenticator in the enrolment
// session of token and returns it with its factor and, for a first factor,
// the recovery codes.
func (e *env) registerKey(t *testing.T, token string) (*webauthntest.Authenticator, mfa.Factor, []secret.String) {
	t.Helper()
	a := webauthntest.New()
	options, err := e.svc.BeginWebAuthnRegistration(t.Context(), token, "key", "")
	if err != nil {
		t.Fatalf("BeginWebAuthnRegistration: %v", err)
	}
	cred, err := a.Create(options, origin)
	if err != nil {
		t.Fatalf("authenticator create: %v", err)
	}
	f, codes, err := e.svc.FinishWebAuthnRegistration(t.Context(), token, cred)
	if err != nil {
		t.Fatalf("FinishWebAuthnRegistration: %v", err)
	}
	return a, f, codes
}

// signedLogin begins a WebAuthn login of userID and has a sign it with its
// first credential, whether the options allow it or not (a key the user no
// longer has): the challenge id and assertion that FinishWebAuthnLogin
// takes.
func (e *env) signedLogin(t *testing.T, userID string, a *webauthntest.Authenticator) (string, []byte) {
	t.Helper()
	lc, err := e.svc.BeginWebAuthnLogin(asPortal(t), userID, browser)
	if err != nil {
		t.Fatalf("BeginWebAuthnLogin: %v", err)
	}
	assertion, err := a.GetWith(lc.Options, origin, webauthntest.Tamper{CredentialID: a.Credentials()[0]})
	if err != nil {
		t.Fatalf("authenticator get: %v", err)
	}
	return lc.ID.Reveal(), assertion
}

// login runs a whole WebAuthn login of userID with a.
func (e *env) login(t *testing.T, userID string, a *webauthntest.Authenticator) mfa.Result {
	t.Helper()
	id, assertion := e.signedLogin(t, userID, a)
	r, _, err := e.svc.FinishWebAuthnLogin(asPortal(t), id, assertion, browser)
	if err != nil {
		t.Fatalf("FinishWebAuthnLogin: %v", err)
	}
	return r
}

// user reads userID.
func (e *env) user(t *testing.T, userID string) mfa.User {
	t.Helper()
	u, err := e.svc.GetUser(t.Context(), userID)
	if err != nil {
		t.Fatalf("GetUser: %v", err)
	}
	return u
}

// factorIDs are the IDs of u's factors, in order.
func factorIDs(u mfa.User) []string {
	ids := []string{}
	for _, f := range u.Factors {
		ids = append(ids, f.ID)
	}
	return ids
}

// events returns userID's audit events in chain order.
func (e *env) events(t *testing.T, userID string) []mfa.Event {
	t.Helper()
	var all []mfa.Event
	q := mfa.EventQuery{UserID: userID, Limit: mfa.MaxEventLimit}
	for {
		page, next, err := e.svc.ListAuditEvents(t.Context(), q)
		if err != nil {
			t.Fatalf("ListAuditEvents: %v", err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		q.Cursor = next
	}
	slices.Reverse(all)
	return all
}

// audited is what the tests compare of an event.
type audited struct {
	Action    mfa.Action
	Result    string
	FactorID  string
	Actor     string
	Reason    string
	ClientIP  string
	UserAgent string
	RequestID string
}

func auditedOf(evs []mfa.Event) []audited {
	out := []audited{}
	for _, e := range evs {
		out = append(out, audited{e.Action, e.Result, e.FactorID, e.Actor, e.Reason, e.ClientIP, e.UserAgent, e.RequestID})
	}
	return out
}

// byAdmin, byPortal and fromBrowser are events of a call of the admin, of
// the portal, and of the portal for the browser.
func byAdmin(a mfa.Action, factorID, reason string) audited {
	return audited{Action: a, FactorID: factorID, Reason: reason, Actor: adminOrigin.Actor,
		ClientIP: adminOrigin.ClientIP, UserAgent: adminOrigin.UserAgent, RequestID: adminOrigin.RequestID}
}

func byPortal(a mfa.Action, result, factorID string) audited {
	return audited{Action: a, Result: result, FactorID: factorID, Actor: portalOrigin.Actor,
		ClientIP: portalOrigin.ClientIP, UserAgent: portalOrigin.UserAgent, RequestID: portalOrigin.RequestID}
}

func fromBrowser(a mfa.Action, result, factorID string) audited {
	return audited{Action: a, Result: result, FactorID: factorID, Actor: portalOrigin.Actor,
		ClientIP: browser.IP, UserAgent: browser.UserAgent, RequestID: portalOrigin.RequestID}
}

// hookedStore is the real store with hooks: it runs a function after a
// StartAttempt, alters the events Chain returns, or fails AppendEvent.
// Set its fields before the calls they affect.
type hookedStore struct {
	mfa.Store
	mu sync.Mutex
	// afterStartAttempt runs once after the next StartAttempt.
	afterStartAttempt func()
	// chain, if set, alters the events Chain returns.
	chain func(userID string, evs []mfa.Event) []mfa.Event
	// appendErr, if set, fails AppendEvent.
	appendErr error
}

// wrap is an envOptions.wrap.
func (h *hookedStore) wrap(s mfa.Store) mfa.Store {
	h.Store = s
	return h
}

func (h *hookedStore) StartAttempt(ctx context.Context, userID string, now time.Time, lim mfa.Limits) (mfa.Attempt, error) {
	a, err := h.Store.StartAttempt(ctx, userID, now, lim)
	h.mu.Lock()
	f := h.afterStartAttempt
	h.afterStartAttempt = nil
	h.mu.Unlock()
	if f != nil {
		f()
	}
	return a, err
}

func (h *hookedStore) Chain(ctx context.Context, userID string, from uint64, n int) ([]mfa.Event, error) {
	evs, err := h.Store.Chain(ctx, userID, from, n)
	if err == nil && h.chain != nil {
		evs = h.chain(userID, evs)
	}
	return evs, err
}

func (h *hookedStore) AppendEvent(ctx context.Context, e mfa.Event) (mfa.Event, error) {
	if h.appendErr != nil {
		return mfa.Event{}, h.appendErr
	}
	return h.Store.AppendEvent(ctx, e)
}
