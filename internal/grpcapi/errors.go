package grpcapi

import (
	"context"
	"errors"
	"log/slog"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// toStatus translates an error of the flows into the gRPC status the caller
// sees. It is the one place where status codes are chosen. Errors the caller
// cannot act on become Internal with only the request id; the detail goes to
// the log.
func toStatus(ctx context.Context, log *slog.Logger, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	var fe *mfa.FieldError
	switch {
	case errors.As(err, &fe):
		return status.Error(codes.InvalidArgument, fe.Error())
	case errors.Is(err, mfa.ErrNotFound):
		return status.Error(codes.NotFound, err.Error())
	case errors.Is(err, mfa.ErrRefused):
		return status.Error(codes.FailedPrecondition, err.Error())
	case errors.Is(err, mfa.ErrDuplicate):
		return status.Error(codes.AlreadyExists, err.Error())
	case errors.Is(err, mfa.ErrLocked):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, "request canceled")
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "deadline exceeded")
	}
	id := requestID(ctx)
	log.ErrorContext(ctx, "internal error", "request_id", id, "err", err)
	return status.Errorf(codes.Internal, "internal error (request id %s)", id)
}
