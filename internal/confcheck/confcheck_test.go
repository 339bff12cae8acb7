package confcheck

import (
	"reflect"
	"testing"
)

func TestProblems(t *testing.T) {
	var none Problems
	none.Check(true, "not reported")
	none.Add(nil)
	if err := none.Err(); err != nil {
		t.Fatalf("no problem, got %v", err)
	}

	var inner Problems
	inner.Check(false, "--b must be %s", "positive")
	inner.Check(false, "--c is required")
	var p Problems
	p.Check(false, "--a %q is not host:port", "x")
	p.Add(inner.Err())
	p.Check(true, "not reported")
	err := p.Err()
	want := []string{`--a "x" is not host:port`, "--b must be positive", "--c is required"}
	if got := List(err); !reflect.DeepEqual(got, want) {
		t.Fatalf("List = %q, want %q", got, want)
	}
	if List(nil) != nil {
		t.Fatal("List(nil) is not empty")
	}
}
