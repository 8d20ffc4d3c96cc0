package nova

import "hash/maphash"

// names is a Decoder's table of interned names: open addressing over their
// hashes, kept from one request to the next. Each name also records the
// last request that named it as a host, so that a repeated host is known
// without another table.
type names struct {
	seed    maphash.Seed
	slots   []nameSlot // a power of two, at most half full
	list    []string   // the interned names
	bytes   int        // their lengths together
	request []uint32   // per name, the last request that named it as a host
	current uint32     // the request being decoded
}

type nameSlot struct {
	hash uint64
	idx  int32 // 1 + the index in list; 0 for an empty slot
}

// next starts a request. Past MaxInterned names or MaxInternedBytes, t
// forgets them all first; within a request it keeps every name, so that it
// knows every repeat.
func (t *names) next() {
	if t.seed == (maphash.Seed{}) {
		t.seed = maphash.MakeSeed()
	}
	if len(t.list) > MaxInterned || t.bytes > MaxInternedBytes { // its memory too, which a huge request grew
		t.slots, t.list, t.request, t.bytes = nil, nil, nil, 0
	}
	t.current++
	if t.current == 0 { // wrapped: old requests could read as this one
		clear(t.request)
		t.current = 1
	}
}

// host interns b, a host's name, and reports whether the request named
// that host before.
func (t *names) host(b []byte) (name string, repeated bool) {
	return t.mark(intern(t, maphash.Bytes(t.seed, b), b))
}

// hostString is host for a name in a string.
func (t *names) hostString(s string) (name string, repeated bool) {
	return t.mark(intern(t, maphash.String(t.seed, s), s))
}

func (t *names) mark(i int32) (name string, repeated bool) {
	repeated = t.request[i] == t.current
	t.request[i] = t.current
	return t.list[i], repeated
}

// intern returns the index in t.list of the name b, of hash h, adding it
// first if need be.
func intern[T string | []byte](t *names, h uint64, b T) int32 {
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; len(t.slots) > 0; i = (i + 1) & mask {
		sl := t.slots[i]
		if sl.idx == 0 {
			break
		}
		if sl.hash == h && t.list[sl.idx-1] == string(b) {
			return sl.idx - 1
		}
	}
	t.list = append(t.list, string(b))
	t.bytes += len(b)
	t.request = append(t.request, 0)
	idx := int32(len(t.list) - 1)
	if 2*len(t.list) > len(t.slots) {
		t.grow()
	} else {
		t.place(h, idx)
	}
	return idx
}

// place puts list[idx], of hash h, in the first empty slot of its probe.
func (t *names) place(h uint64, idx int32) {
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i].idx != 0 {
		i = (i + 1) & mask
	}
	t.slots[i] = nameSlot{hash: h, idx: idx + 1}
}

// grow doubles the slots (at least 64), placing every name again.
func (t *names) grow() {
	n := max(64, 2*len(t.slots))
	for n < 2*len(t.list) {
		n *= 2
	}
	t.slots = make([]nameSlot, n)
	for i, name := range t.list {
		t.place(maphash.String(t.seed, name), int32(i))
	}
}
