// Package config holds the one error type for a wrong configuration key,
// shared by the relay, the agent and the command that reads their files.
package config

import (
	"errors"
	"fmt"
)

// FieldError is a configuration error naming its key, and its file once known.
type FieldError struct {
	File   string
	Key    string
	Reason string
}

func (e *FieldError) Error() string {
	if e.File == "" {
		return e.Key + ": " + e.Reason
	}
	return e.File + ": " + e.Key + ": " + e.Reason
}

// Errors collects a config's errors in the order they are found.
type Errors []error

// Add records that key is wrong; the reason should say how to fix it.
func (e *Errors) Add(key, format string, a ...any) {
	*e = append(*e, &FieldError{Key: key, Reason: fmt.Sprintf(format, a...)})
}

// Join returns the collected errors as one, or nil when there are none.
func (e Errors) Join() error { return errors.Join(e...) }

// InFile attributes err, and each error joined in it, to the file path.
func InFile(path string, err error) error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var errs []error
		for _, e := range j.Unwrap() {
			errs = append(errs, InFile(path, e))
		}
		return errors.Join(errs...)
	}
	if fe, ok := err.(*FieldError); ok {
		return &FieldError{File: path, Key: fe.Key, Reason: fe.Reason}
	}
	return fmt.Errorf("%s: %w", path, err)
}
