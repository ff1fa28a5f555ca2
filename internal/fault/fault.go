// Package fault classifies errors into the few kinds callers act on
// (invalid input, not found, conflict, forbidden, unavailable, too large),
// keeping the message a user sees apart from the internal cause.
package fault

import (
	"errors"
	"fmt"
)

// Kind is a class of failure. Each kind maps to one HTTP status and one
// stable problem type at the API edge.
type Kind string

const (
	Internal     Kind = "internal"
	Invalid      Kind = "invalid"
	NotFound     Kind = "not-found"
	Conflict     Kind = "conflict"
	Forbidden    Kind = "forbidden"
	Unauthorized Kind = "unauthorized"
	TooLarge     Kind = "too-large"
	Unavailable  Kind = "unavailable"
	// RateLimited: too many requests from one caller; retry later.
	RateLimited Kind = "rate-limited"
)

// Error is an error with a kind and a message safe to show to the caller.
// Cause, when set, is for logs only.
type Error struct {
	Kind    Kind
	Message string
	// Field names the offending input ("payloads[1].sha256"), if any.
	Field string
	Cause error
}

func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Cause != nil {
		return msg + ": " + e.Cause.Error()
	}
	return msg
}

func (e *Error) Unwrap() error { return e.Cause }

// E returns an error of kind k with a formatted user-facing message.
func E(k Kind, format string, args ...any) error {
	return &Error{Kind: k, Message: fmt.Sprintf(format, args...)}
}

// Field returns an Invalid error about one named input field.
func Field(field, format string, args ...any) error {
	return &Error{Kind: Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an error of kind k with message msg whose cause is err.
func Wrap(err error, k Kind, msg string) error {
	return &Error{Kind: k, Message: msg, Cause: err}
}

// KindOf reports the kind of err: the kind of the first *Error in its chain,
// or Internal when there is none.
func KindOf(err error) Kind {
	var fe *Error
	if errors.As(err, &fe) {
		return fe.Kind
	}
	return Internal
}

// Is reports whether err is of kind k.
func Is(err error, k Kind) bool { return err != nil && KindOf(err) == k }

// Message returns the user-facing message of err, hiding internal causes.
func Message(err error) string {
	var fe *Error
	if errors.As(err, &fe) && fe.Kind != Internal {
		if fe.Field != "" {
			return fe.Field + ": " + fe.Message
		}
		return fe.Message
	}
	return "internal error"
}
