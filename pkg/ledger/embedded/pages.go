package embedded

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"io"
	"os"
)

// bbolt's page layout (go.etcd.io/bbolt/internal/common, file format
// version 2): a page starts with a 16-byte header (id uint64, flags uint16,
// count uint16, overflow uint32) followed by count elements of 16 bytes. A
// branch element is (pos uint32, ksize uint32, child page id uint64), a leaf
// element (flags uint32, pos uint32, ksize uint32, vsize uint32); pos counts
// from the element itself. A bucket is a leaf value that starts with its root
// page id and sequence (16 bytes); an inline bucket (root 0) holds its page
// right after them. A meta page holds, after the header, magic, version,
// page size, flags (uint32 each), the root bucket (16 bytes), the freelist
// page id, the high-water mark, the transaction id and a checksum (uint64).
const (
	pageHeaderSize  = 16
	pageElementSize = 16
	bucketHeader    = 16

	pageBranch   = 0x01
	pageLeaf     = 0x02
	pageFreelist = 0x10
	leafBucket   = 0x01

	noFreelist = ^uint64(0)
	// maxTreeDepth bounds the walk; a B+tree of any file this size is far
	// shallower.
	maxTreeDepth = 64
)

var ne = binary.NativeEndian // bbolt writes its pages in the machine's order

// checkPages reads, from the file itself, every page reachable from the meta
// page of transaction txid, and checks that each lies below the high-water
// mark hwm and within the file, has a branch or leaf type, holds its elements
// and their keys and values within its own bytes, and is referenced once.
// It runs before anything in bbolt walks the tree in a goroutine of its own
// (tx.Check): there, a page id or key offset pointing outside the mapped file
// would fault, and a fault outside a goroutine that asked for panics on
// faults kills the process.
func checkPages(path string, pageSize int, hwm, txid uint64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	w := &pageWalker{f: f, size: fi.Size(), ps: uint64(pageSize), hwm: hwm, seen: map[uint64]bool{}}
	if hwm < 4 || hwm*w.ps > uint64(w.size) {
		return fmt.Errorf("the file is %d bytes; its meta page says it holds %d pages of %d bytes (truncated?)", w.size, hwm, pageSize)
	}
	var root, freelist uint64
	found := false
	for id := uint64(0); id < 2; id++ {
		m, err := w.read(id, pageHeaderSize+64)
		if err != nil {
			return err
		}
		m = m[pageHeaderSize:]
		if ne.Uint64(m[48:56]) == txid && ne.Uint64(m[40:48]) == hwm {
			root, freelist, found = ne.Uint64(m[16:24]), ne.Uint64(m[32:40]), true
		}
	}
	if !found {
		return fmt.Errorf("no meta page names transaction %d", txid)
	}
	w.seen[0], w.seen[1] = true, true
	if freelist != noFreelist {
		if err := w.freelist(freelist); err != nil {
			return err
		}
	}
	return w.tree(root, 0)
}

type pageWalker struct {
	f    *os.File
	size int64
	ps   uint64
	hwm  uint64
	seen map[uint64]bool
}

// read returns n bytes from the start of page id.
func (w *pageWalker) read(id, n uint64) ([]byte, error) {
	off := id * w.ps
	if id >= w.hwm || off+n > uint64(w.size) || off+n < off {
		return nil, fmt.Errorf("page %d: beyond the end of the file", id)
	}
	buf := make([]byte, n)
	if _, err := w.f.ReadAt(buf, int64(off)); err != nil && err != io.EOF {
		return nil, err
	}
	return buf, nil
}

// span reads page id with its overflow pages and checks its header.
func (w *pageWalker) span(id uint64) (flags uint16, count int, buf []byte, err error) {
	if id < 2 || id >= w.hwm {
		return 0, 0, nil, fmt.Errorf("page id %d: outside the file's pages 2..%d", id, w.hwm-1)
	}
	hdr, err := w.read(id, pageHeaderSize)
	if err != nil {
		return 0, 0, nil, err
	}
	if got := ne.Uint64(hdr[0:8]); got != id {
		return 0, 0, nil, fmt.Errorf("page %d: says it is page %d", id, got)
	}
	flags, count = ne.Uint16(hdr[8:10]), int(ne.Uint16(hdr[10:12]))
	overflow := uint64(ne.Uint32(hdr[12:16]))
	if id+overflow >= w.hwm {
		return 0, 0, nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, w.hwm)
	}
	for i := id; i <= id+overflow; i++ {
		if w.seen[i] {
			return 0, 0, nil, fmt.Errorf("page %d: referenced more than once", i)
		}
		w.seen[i] = true
	}
	buf, err = w.read(id, (overflow+1)*w.ps)
	return flags, count, buf, err
}

func (w *pageWalker) freelist(id uint64) error {
	flags, count, buf, err := w.span(id)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	if flags != pageFreelist {
		return fmt.Errorf("freelist page %d: type %#x", id, flags)
	}
	n, first := uint64(count), uint64(0)
	if count == 0xFFFF {
		if len(buf) < pageHeaderSize+8 {
			return fmt.Errorf("freelist page %d: too short", id)
		}
		n, first = ne.Uint64(buf[pageHeaderSize:]), 1
	}
	if n > uint64(len(buf))/8 || pageHeaderSize+(first+n)*8 > uint64(len(buf)) {
		return fmt.Errorf("freelist page %d: %d page ids do not fit in it", id, n)
	}
	return nil
}

// tree checks the page tree rooted at id.
func (w *pageWalker) tree(id uint64, depth int) error {
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: the tree is deeper than %d levels", id, maxTreeDepth)
	}
	flags, count, buf, err := w.span(id)
	if err != nil {
		return err
	}
	switch flags {
	case pageBranch:
		if count == 0 {
			return fmt.Errorf("page %d: a branch page without elements", id)
		}
		children := make([]uint64, count)
		for i := range count {
			e := uint64(pageHeaderSize + i*pageElementSize)
			if e+pageElementSize > uint64(len(buf)) {
				return fmt.Errorf("page %d: element %d lies outside the page", id, i)
			}
			pos, ksize := uint64(ne.Uint32(buf[e:])), uint64(ne.Uint32(buf[e+4:]))
			if e+pos+ksize > uint64(len(buf)) {
				return fmt.Errorf("page %d: key %d lies outside the page", id, i)
			}
			children[i] = ne.Uint64(buf[e+8:])
		}
		for _, c := range children {
			if err := w.tree(c, depth+1); err != nil {
				return err
			}
		}
		return nil
	case pageLeaf:
		return w.leaf(id, buf, count, depth)
	}
	return fmt.Errorf("page %d: type %#x where a branch or leaf page belongs", id, flags)
}

// leaf checks the elements of a leaf page held in buf (a page of the file,
// or an inline bucket's page inside a value).
func (w *pageWalker) leaf(id uint64, buf []byte, count, depth int) error {
	for i := range count {
		e := uint64(pageHeaderSize + i*pageElementSize)
		if e+pageElementSize > uint64(len(buf)) {
			return fmt.Errorf("page %d: element %d lies outside the page", id, i)
		}
		flags := ne.Uint32(buf[e:])
		pos, ksize, vsize := uint64(ne.Uint32(buf[e+4:])), uint64(ne.Uint32(buf[e+8:])), uint64(ne.Uint32(buf[e+12:]))
		end := e + pos + ksize + vsize
		if end > uint64(len(buf)) {
			return fmt.Errorf("page %d: key or value %d lies outside the page", id, i)
		}
		if flags&leafBucket == 0 {
			continue
		}
		if err := w.bucket(id, buf[e+pos+ksize:end], depth); err != nil {
			return err
		}
	}
	return nil
}

// bucket checks a bucket held in value v of page id.
func (w *pageWalker) bucket(id uint64, v []byte, depth int) error {
	if len(v) < bucketHeader {
		return fmt.Errorf("page %d: a bucket value of %d bytes", id, len(v))
	}
	if root := ne.Uint64(v[0:8]); root != 0 {
		return w.tree(root, depth+1)
	}
	p := v[bucketHeader:]
	if len(p) < pageHeaderSize {
		return fmt.Errorf("page %d: an inline bucket without a page", id)
	}
	if flags := ne.Uint16(p[8:10]); flags != pageLeaf {
		return fmt.Errorf("page %d: an inline bucket's page has type %#x", id, flags)
	}
	if depth > maxTreeDepth {
		return fmt.Errorf("page %d: buckets nested deeper than %d levels", id, maxTreeDepth)
	}
	return w.leaf(id, p, int(ne.Uint16(p[10:12])), depth+1)
}

// metaMagic and metaVersion mark a valid meta page.
const (
	metaMagic   = 0xED0CDAED
	metaVersion = 2
	metaSize    = 64
)

// checkLength reads the meta pages of the file at path and checks that the
// file holds every page the newest valid one counts (its high-water mark).
// It runs before bbolt opens the file: bbolt reads the freelist page, which
// a truncated file may lack, through its memory map, and a read beyond the
// end of a mapped file faults. A file with no valid meta page is left to
// bbolt to refuse.
func checkLength(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	readMeta := func(off int64) (ps, hwm, txid uint64, ok bool) {
		buf := make([]byte, pageHeaderSize+metaSize)
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, 0, 0, false
		}
		m := buf[pageHeaderSize:]
		h := fnv.New64a()
		h.Write(m[:56])
		if ne.Uint32(m[0:4]) != metaMagic || ne.Uint32(m[4:8]) != metaVersion || h.Sum64() != ne.Uint64(m[56:64]) {
			return 0, 0, 0, false
		}
		return uint64(ne.Uint32(m[8:12])), ne.Uint64(m[40:48]), ne.Uint64(m[48:56]), true
	}
	ps0, hwm0, tx0, ok0 := readMeta(0)
	off1 := int64(os.Getpagesize())
	if ok0 {
		off1 = int64(ps0)
	}
	ps1, hwm1, tx1, ok1 := readMeta(off1)
	ps, hwm := ps0, hwm0
	switch {
	case ok1 && (!ok0 || tx1 > tx0):
		ps, hwm = ps1, hwm1
	case !ok0:
		return nil
	}
	if need := hwm * ps; need/ps != hwm || need > uint64(fi.Size()) {
		return fmt.Errorf("the file is %d bytes, and its meta page says it holds %d pages of %d bytes: it was cut short", fi.Size(), hwm, ps)
	}
	return nil
}
