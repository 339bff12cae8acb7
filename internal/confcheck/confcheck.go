// Package confcheck collects the problems of a configuration so that a
// Validate method reports every one of them at once, each naming the
// setting by its flag (CONFIG.md's vocabulary: "--ws-ping-interval must be
// at least 10ms").
package confcheck

import (
	"errors"
	"fmt"
)

// Problems gathers a configuration's problems; the zero value is empty.
type Problems struct{ errs []error }

// Check records the problem format describes unless ok.
func (p *Problems) Check(ok bool, format string, args ...any) {
	if !ok {
		p.errs = append(p.errs, fmt.Errorf(format, args...))
	}
}

// Add records err's problems (another Validate's result); nil adds none.
func (p *Problems) Add(err error) {
	if err != nil {
		p.errs = append(p.errs, err)
	}
}

// Err is the problems joined (errors.Join), or nil when there are none.
func (p *Problems) Err() error { return errors.Join(p.errs...) }

// List flattens an error of joined problems (Err, possibly nesting other
// Validate results) into one message per problem, in order.
func List(err error) []string {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []string
		for _, e := range j.Unwrap() {
			out = append(out, List(e)...)
		}
		return out
	}
	return []string{err.Error()}
}
