package grpcapi

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// Kinds of errors the edge decides itself, before or around the flows.
var (
	errUnauthenticated  = errors.New("unauthenticated")
	errPermissionDenied = errors.New("permission denied")
	errUndecodable      = errors.New("undecodable request")
)

// edgeError is a refusal decided at the gRPC edge (authentication, roles,
// decoding): its kind, the message the caller sees and, apart from it, a
// cause for the log.
type edgeError struct {
	kind   error
	reason string // for the log line, like mfa.Reason
	msg    string
	cause  error
}

func (e *edgeError) Error() string {
	if e.cause == nil {
		return e.msg
	}
	return e.msg + ": " + e.cause.Error()
}

func (e *edgeError) Is(target error) bool { return target == e.kind }
func (e *edgeError) Unwrap() error        { return e.cause }

// GRPCStatus is the status toStatus gives the error, for code that reads a
// status straight from it (grpc-go, status.Code in tests).
func (e *edgeError) GRPCStatus() *status.Status { return toStatus(e, "") }

// panicError is a handler's panic, recovered.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string { return fmt.Sprintf("panic: %v", e.value) }

// errorKinds maps each kind of error to its code, with the message a caller sees
// when an error of that kind carries no message of its own.
var errorKinds = []struct {
	kind error
	code codes.Code
	msg  string
}{
	{mfa.ErrRefused, codes.FailedPrecondition, "refused"},
	{mfa.ErrNotFound, codes.NotFound, "not found"},
	{mfa.ErrLocked, codes.ResourceExhausted, "too many failed attempts: retry later"},
	{mfa.ErrDuplicate, codes.AlreadyExists, "already registered"},
	{mfa.ErrConflict, codes.Aborted, "the record changed meanwhile: retry"},
	{mfa.ErrWrongCode, codes.FailedPrecondition, "the code is wrong, expired or already used"},
	{mfa.ErrUnavailable, codes.Unavailable, "the store is unavailable: retry"},
	{errUnauthenticated, codes.Unauthenticated, "unauthenticated"},
	{errPermissionDenied, codes.PermissionDenied, "permission denied"},
	{errUndecodable, codes.InvalidArgument, "undecodable request"},
}

// toStatus translates an error into the gRPC status the caller sees. It is
// the only place where status codes are chosen: the handlers, the
// authentication and decoding checks and the panic recovery all hand their
// errors to the logging interceptor, which calls it once per call.
//
// The caller sees the message written for it (mfa.Error, mfa.FieldError, an
// edge refusal) and never the text of a cause; an error of no known kind
// becomes Internal with only the request id, and an unreachable store
// Unavailable with the request id. The interceptor's log line carries the
// detail.
func toStatus(err error, requestID string) *status.Status {
	if err == nil {
		return nil
	}
	var (
		ee *edgeError
		me *mfa.Error
		fe *mfa.FieldError
	)
	switch {
	case errors.As(err, &ee):
		return statusOf(ee.kind, ee.msg, requestID)
	case errors.As(err, &me):
		return statusOf(me.Kind, me.Message, requestID)
	case errors.As(err, &fe):
		return status.New(codes.InvalidArgument, fe.Error())
	}
	// A status made by grpc-go or a service it provides (health), unwrapped.
	if se, ok := err.(interface{ GRPCStatus() *status.Status }); ok {
		return se.GRPCStatus()
	}
	for _, k := range errorKinds {
		if errors.Is(err, k.kind) {
			return statusOf(k.kind, "", requestID)
		}
	}
	switch {
	case errors.Is(err, context.Canceled):
		return status.New(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.New(codes.DeadlineExceeded, "deadline exceeded")
	}
	return internal(requestID)
}

// statusOf is the status of an error of the given kind and message; an
// empty message takes the kind's.
func statusOf(kind error, msg, requestID string) *status.Status {
	for _, k := range errorKinds {
		if k.kind != kind {
			continue
		}
		if k.code == codes.Unavailable {
			return status.Newf(codes.Unavailable, "%s (request id %s)", k.msg, requestID)
		}
		if msg == "" {
			msg = k.msg
		}
		return status.New(k.code, msg)
	}
	return internal(requestID)
}

func internal(requestID string) *status.Status {
	return status.Newf(codes.Internal, "internal error (request id %s)", requestID)
}

// reasonOf is the rule named by an error, for the log line.
func reasonOf(err error) string {
	var (
		ee *edgeError
		me *mfa.Error
	)
	switch {
	case errors.As(err, &ee):
		return ee.reason
	case errors.As(err, &me):
		return string(me.Reason)
	}
	return ""
}
