package mfa

import (
	"errors"
	"fmt"
)

// FieldError is bad input: the field and what is wrong with it.
type FieldError struct {
	Field   string
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

func badField(field, format string, args ...any) error {
	return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
}

// Errors of the flows, beside the store's ErrNotFound.
var (
	// ErrRefused: the enrolment policy refuses the request; the message says why.
	ErrRefused = errors.New("refused")
	// ErrLocked: too many failed attempts.
	ErrLocked = errors.New("too many failed attempts")
)
