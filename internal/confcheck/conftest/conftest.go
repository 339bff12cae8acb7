// Package conftest holds the table test every component's Config shares:
// its defaults validate, and each way of breaking one setting gives one
// problem that names the setting's flag.
package conftest

import (
	"strings"
	"testing"
)

// Broken is one way to break a config made by the defaults (Case).
type Broken[C any] struct {
	flag string
	mod  func(*C)
}

// Case breaks one setting with mod; the problem Validate reports must
// name flag.
func Case[C any](flag string, mod func(*C)) Broken[C] { return Broken[C]{flag, mod} }

// Check fails t unless defaults() validates and each case gives exactly
// one problem, starting with its flag.
func Check[C interface{ Validate() error }](t testing.TB, defaults func() C, cases ...Broken[C]) {
	t.Helper()
	if err := defaults().Validate(); err != nil {
		t.Fatalf("the defaults do not validate: %v", err)
	}
	for _, tc := range cases {
		c := defaults()
		tc.mod(&c)
		err := c.Validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.flag+" ") || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: Validate = %v, want one problem naming the flag", tc.flag, err)
		}
	}
}
