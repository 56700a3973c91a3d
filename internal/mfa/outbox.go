package mfa

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"time"
)

// Notifiable reports whether e is an event its user should hear about at
// once, so that AppendEvent also puts it in the outbox for the webhook (see
// Outbox): a factor added, removed, suspended or enabled again, a reset, a
// lockout, a recovery code used (verify.recovery accepted), recovery codes
// regenerated, an activation code issued. Verifications otherwise are not:
// the hot path (verify.totp) costs the store nothing more.
func Notifiable(e Event) bool {
	switch e.Action {
	case ActionFactorAdded, ActionFactorRemoved, ActionFactorSuspended, ActionFactorEnabled,
		ActionUserReset, ActionUserLocked, ActionRecoveryRegenerated, ActionActivationIssued,
		ActionBypassIssued:
		return true
	case ActionVerifyRecovery, ActionVerifyBypass:
		return e.Result == ResultAccepted
	}
	return false
}

// Outbox is the part of the Store that keeps the notifications still to be
// delivered to the webhook, so that a receiver that is down or a restart of
// the service loses none, and one replica at a time delivers each.
//
// Enqueue: AppendEvent puts each event e for which Notifiable(e) holds in
// the outbox, as a notification named e.ID(), due at e.Time, with no failed
// attempt and never claimed. It is there if and only if the event is in the
// chain: an append that fails, or that a client retries, leaves both or
// neither, and never one twice. An event that is not notifiable costs the
// append nothing more.
//
// Lease: a notification is claimable from its due time on (due <= now). A
// claim leases it until now + lease, its new due time, so that of
// concurrent claimers, on one replica or many, only one gets it until the
// lease ends; from then on (now >= the lease's end) another claimer may take
// it over, as after a crash of the one that held it. Delivery is so at
// least once: a holder slower than its lease delivers the notification
// again beside its successor.
//
// The times and errors follow the rules of Store: times in whole
// milliseconds of the callers' clock (durations rounded up), ErrNotFound and
// ErrConflict where said, ErrUnavailable and the context's error as for
// every method. An id that is not an Event.ID() is not allowed.
type Outbox interface {
	// ClaimNotifications leases, atomically, up to max notifications due at
	// now, those due the longest first, and returns them: each is then due
	// at now + lease, and its Claim is one more than before (1 at its first
	// claim). None due is no error, and no notification. lease must be more than 0 and max
	// 1 to 1000; other values are not allowed.
	ClaimNotifications(ctx context.Context, now time.Time, lease time.Duration, max int) ([]Notification, error)

	// CompleteNotification removes the notification id from the outbox,
	// leased by the caller or not (it was delivered). One that is not there
	// (completed before, or dropped) is not an error.
	CompleteNotification(ctx context.Context, id string) error

	// RetryNotification makes the notification id due at next, with
	// attempts failed attempts, if its Claim is still claim (the caller's
	// lease, even ended, was not taken over). ErrNotFound if it is not in
	// the outbox; ErrConflict if it was claimed again since (another
	// claimer holds it); nothing changes on error. attempts must not be
	// negative.
	RetryNotification(ctx context.Context, id string, claim uint64, next time.Time, attempts int) error

	// PendingNotifications counts the notifications in the outbox, leased
	// or not: the webhook's backlog. It is exact when no other call runs;
	// a store may count for a while an entry of an append that was overtaken
	// or failed, until a ClaimNotifications or DropNotifications at or
	// after that append's event time has passed over it.
	PendingNotifications(ctx context.Context) (int, error)

	// DropNotifications removes every notification whose event's Time is
	// before before (so one of Time == before stays), leased or not, and
	// returns how many it removed: notifications nobody will deliver.
	DropNotifications(ctx context.Context, before time.Time) (int, error)
}

// Notification is an event of the outbox (see Outbox).
type Notification struct {
	// Event is the audit event, as appended: Event.ID() names the
	// notification, and a receiver de-duplicates by it.
	Event Event
	// Attempts is how many deliveries failed before this claim, as the
	// last RetryNotification set it.
	Attempts int
	// Claim counts the claims of the notification, this one included: it
	// tells RetryNotification whether the lease was taken over.
	Claim uint64
	// LeasedUntil is the end of this claim's lease: now + lease.
	LeasedUntil time.Time
}

// ParseEventID splits an Event.ID() into its user and Seq.
func ParseEventID(id string) (userID string, seq uint64, err error) {
	i := strings.LastIndexByte(id, '/')
	if i < 1 {
		return "", 0, errBadEventID
	}
	seq, err = strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil || seq == 0 || strconv.FormatUint(seq, 10) != id[i+1:] {
		return "", 0, errBadEventID
	}
	return id[:i], seq, nil
}

// errBadEventID: a string that no Event.ID() returns.
var errBadEventID = errors.New("not an event id: want <user>/<seq>")
