package liveset

import (
	"slices"
	"testing"
)

func TestSet(t *testing.T) {
	var s Set[int]
	if len(s.Items()) != 0 {
		t.Fatal("a zero Set is not empty")
	}
	r1, r2 := s.Add(1), s.Add(2)
	if got := s.Items(); slices.Sorted(slices.Values(got))[0] != 1 || len(got) != 2 {
		t.Fatalf("items %v", got)
	}
	r1()
	r1() // twice is harmless
	if got := s.Items(); len(got) != 1 || got[0] != 2 {
		t.Fatalf("after a removal: %v", got)
	}
	r2()
	if len(s.Items()) != 0 {
		t.Fatal("not empty after removing all")
	}
}
