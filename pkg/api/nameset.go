package api

import "hash/maphash"

// nameSet tells apart the host names of one request: open addressing over
// their hashes, kept from one request to the next. On the webhook's path,
// where every name is added once, it is cheaper than a map[string]struct{}:
// one hash per name, and no clearing of its slots between requests.
type nameSet struct {
	seed  maphash.Seed
	slots []nameSlot // a power of two, at most half full
	names []string   // the names added since reset, in order
	gen   uint32     // slots of other generations are empty
}

type nameSlot struct {
	hash uint64
	idx  int32 // index in names
	gen  uint32
}

func newNameSet() nameSet { return nameSet{seed: maphash.MakeSeed(), gen: 1} }

// add adds name and reports whether it was not in the set.
func (s *nameSet) add(name string) bool {
	if 2*(len(s.names)+1) > len(s.slots) {
		s.grow()
	}
	h := maphash.String(s.seed, name)
	if s.find(h, name) {
		return false
	}
	s.names = append(s.names, name)
	s.place(h, int32(len(s.names)-1))
	return true
}

// find reports whether name, of hash h, is in the set.
func (s *nameSet) find(h uint64, name string) bool {
	mask := uint64(len(s.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		sl := &s.slots[i]
		if sl.gen != s.gen {
			return false
		}
		if sl.hash == h && s.names[sl.idx] == name {
			return true
		}
	}
}

// place puts names[idx], of hash h, in the first empty slot of its probe.
func (s *nameSet) place(h uint64, idx int32) {
	mask := uint64(len(s.slots) - 1)
	i := h & mask
	for s.slots[i].gen == s.gen {
		i = (i + 1) & mask
	}
	s.slots[i] = nameSlot{hash: h, idx: idx, gen: s.gen}
}

func (s *nameSet) grow() {
	n := max(64, 2*len(s.slots))
	for n < 2*(len(s.names)+1) {
		n *= 2
	}
	s.slots = make([]nameSlot, n)
	s.gen = 1
	for i, name := range s.names {
		s.place(maphash.String(s.seed, name), int32(i))
	}
}

// reset empties the set, keeping its memory.
func (s *nameSet) reset() {
	clear(s.names) // the strings may be freed
	s.names = s.names[:0]
	s.gen++
	if s.gen == 0 { // wrapped: slots of old generations could read as full
		clear(s.slots)
		s.gen = 1
	}
}
