package operator

import (
	"errors"
	"fmt"
)

// ErrInvalid marks input an operator gave that cannot be stored (a record
// or change that does not parse, an unknown field, a value a field does
// not take, a name that cannot be one): the CLI exits 2 on it and the
// admin API answers 400. Test with errors.Is.
var ErrInvalid = errors.New("invalid input")

// invalidError is an error of the operator's input.
type invalidError struct{ err error }

func (e *invalidError) Error() string        { return e.err.Error() }
func (e *invalidError) Unwrap() error        { return e.err }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// invalid marks err as the input's fault (nil stays nil).
func invalid(err error) error {
	if err == nil {
		return nil
	}
	return &invalidError{err}
}

// invalidf is invalid(fmt.Errorf(...)).
func invalidf(format string, args ...any) error { return invalid(fmt.Errorf(format, args...)) }
