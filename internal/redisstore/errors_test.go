package redisstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/secondfactor/secondfactor/internal/mfa"
)

// TestStoreError covers the errors that storeError marks unavailable, and
// some it must not, with errors of the kinds Redis calls return.
func TestStoreError(t *testing.T) {
	opErr := func(op string, err error) error { return &net.OpError{Op: op, Net: "tcp", Err: err} }
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection refused", opErr("dial", os.NewSyscallError("connect", syscall.ECONNREFUSED)), true},
		{"connection reset", opErr("read", os.NewSyscallError("read", syscall.ECONNRESET)), true},
		{"read timeout", opErr("read", os.ErrDeadlineExceeded), true},
		{"connection closed by the server", io.EOF, true},
		{"reply cut short", fmt.Errorf("reading reply: %w", io.ErrUnexpectedEOF), true},
		{"pool timeout", redis.ErrPoolTimeout, true},
		{"client closed", redis.ErrClosed, true},
		{"deadline of the caller", context.DeadlineExceeded, true},
		{"cancelled by the caller", context.Canceled, false},
		{"dial cancelled by the caller", opErr("dial", context.Canceled), false},
		{"no such key", redis.Nil, false},
		{"script error", redis.ErrNoScript, false},
		{"anything else", errors.New("corrupt record"), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := storeError("op", c.err)
			if got := errors.Is(err, mfa.ErrUnavailable); got != c.want {
				t.Errorf("storeError(%v) wraps mfa.ErrUnavailable: got %v, want %v", c.err, got, c.want)
			}
			if !errors.Is(err, c.err) {
				t.Errorf("storeError(%v) = %v, which does not wrap the cause", c.err, err)
			}
		})
	}
}
