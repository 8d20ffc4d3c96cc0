package api

import (
	"math/rand/v2"
	"strconv"
	"testing"
)

// nameSet must answer as a map does, across growth and resets, and across
// the wrap of its generation counter.
func TestNameSetAgreesWithMap(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	s := newNameSet()
	for round := range 300 {
		if round == 150 {
			s.gen = ^uint32(0) // the next reset wraps
		}
		want := map[string]bool{}
		n := r.IntN(3000)
		for range n {
			name := "compute-" + strconv.Itoa(r.IntN(n+1))
			if got, fresh := s.add(name), !want[name]; got != fresh {
				t.Fatalf("round %d: add(%q) = %v, want %v", round, name, got, fresh)
			}
			want[name] = true
		}
		if len(s.names) != len(want) {
			t.Fatalf("round %d: %d names kept, want %d", round, len(s.names), len(want))
		}
		s.reset()
	}
}
