package embedded_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/embedded"
)

// realLedger writes a ledger of about 120 entries (hosts put and changed,
// regulations put, changed and deleted) in dir, closes it, and returns what
// Verify says of it.
func realLedger(t testing.TB, dir string) embedded.VerifyReport {
	t.Helper()
	l := openAt(t, filepath.Join(dir, embedded.FileName))
	ctx := as(alice)
	countries := []string{"JP", "GB", "DE", "FR"}
	for i := range 70 {
		mustPutHost(t, l, ctx, host(fmt.Sprintf("cmp-%03d", i%35), countries[i%4], "CompanyA", fmt.Sprintf("Org%d", i%7)))
	}
	for i := range 45 {
		s := filter.ProjectSubject(fmt.Sprintf("p%02d", i%20))
		mustPutRegulation(t, l, ctx, s, filter.Rule{Country: countries[i%4], Organization: "CompanyA"}, filter.Rule{Country: "*", Organization: fmt.Sprintf("Org%d", i%5)})
		if i%9 == 8 {
			if err := l.DeleteRegulation(ctx, s); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	r, err := embedded.OpenReadOnly(filepath.Join(dir, embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rep, err := r.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func sha(t testing.TB, path string) [32]byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(data)
}

// TestDamagedFiles damages copies of a real ledger at random: bytes flipped
// in the ledger file and in its head file, the ledger file cut at random
// lengths and emptied. Each copy must give a clean error, never a panic, both
// from verify (read-only; the file's bytes are left as they were) and from
// Open as filterd opens it; a copy that still verifies or opens must be the
// ledger exactly as it was (a flip in an unused page, a cut of unused pages
// at the end). The seed is printed; LEDGERFENCE_DAMAGE_SEED replays a run.
func TestDamagedFiles(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("LEDGERFENCE_DAMAGE_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("LEDGERFENCE_DAMAGE_SEED=%q: %v", s, err)
		}
		seed = n
	}
	t.Logf("seed %d (LEDGERFENCE_DAMAGE_SEED=%d replays this run)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 0x6c656467657266))

	orig := t.TempDir()
	want := realLedger(t, orig)
	dbData, err := os.ReadFile(filepath.Join(orig, embedded.FileName))
	if err != nil {
		t.Fatal(err)
	}
	headData, err := os.ReadFile(filepath.Join(orig, embedded.HeadFileName))
	if err != nil {
		t.Fatal(err)
	}

	type damage struct {
		name string
		db   []byte
		head []byte
	}
	var cases []damage
	flip := func(data []byte, n int) ([]byte, int, byte) {
		out := append([]byte(nil), data...)
		i, bit := rng.IntN(n), byte(1)<<rng.IntN(8)
		out[i] ^= bit
		return out, i, bit
	}
	// Half the flips anywhere in the file, half in the pages below its
	// high-water mark, where bbolt keeps what is in use (and pages freed).
	used := inUse(t, dbData)
	t.Logf("the ledger file is %d bytes, %d of them below the high-water mark", len(dbData), used)
	for i := range 240 {
		n := len(dbData)
		if i%2 == 1 {
			n = used
		}
		db, i, bit := flip(dbData, n)
		cases = append(cases, damage{fmt.Sprintf("ledger byte %d ^ %#02x", i, bit), db, headData})
	}
	for range 40 {
		n := rng.IntN(len(dbData))
		cases = append(cases, damage{fmt.Sprintf("ledger cut to %d of %d bytes", n, len(dbData)), dbData[:n], headData})
	}
	cases = append(cases, damage{"ledger empty", nil, headData})
	for range 20 {
		h, i, bit := flip(headData, len(headData))
		cases = append(cases, damage{fmt.Sprintf("head file byte %d ^ %#02x", i, bit), dbData, h})
	}

	ctx := context.Background()
	var refused, unchanged int
	for _, c := range cases {
		dir := t.TempDir()
		path := filepath.Join(dir, embedded.FileName)
		if err := os.WriteFile(path, c.db, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, embedded.HeadFileName), c.head, 0o600); err != nil {
			t.Fatal(err)
		}
		fail := func(format string, args ...any) {
			t.Helper()
			t.Errorf("seed %d, %s: %s", seed, c.name, fmt.Sprintf(format, args...))
		}
		before := sha(t, path)

		// As ledgerctl verify reads it.
		verified := false
		l, err := embedded.OpenReadOnly(path)
		switch {
		case err != nil:
			if !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, embedded.ErrCorrupt) {
				fail("OpenReadOnly: %v, want ErrCorrupt", err)
			}
		default:
			rep, err := l.Verify(ctx)
			switch {
			case err == nil:
				verified = true
				if rep.ChainHead() != want.ChainHead() || rep.HeadFileBehind != 0 || rep.Hosts != want.Hosts || rep.Regulations != want.Regulations {
					fail("verifies as %+v, and the ledger was %+v", rep, want)
				}
			case !errors.Is(err, embedded.ErrTampered) && !errors.Is(err, embedded.ErrCorrupt):
				fail("Verify: %v, want ErrTampered or ErrCorrupt", err)
			}
			l.Close()
		}
		if sha(t, path) != before {
			fail("verify changed the file")
		}

		// As filterd opens it.
		l, err = embedded.Open(path, embedded.WithOpenTimeout(time.Second))
		if err != nil {
			if !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, embedded.ErrCorrupt) && !errors.Is(err, embedded.ErrTampered) {
				fail("Open: %v, want ErrCorrupt or ErrTampered", err)
			}
			if verified {
				fail("verifies, but Open refuses it: %v", err)
			}
			refused++
			continue
		}
		h, err := l.Head(ctx)
		page, lerr := l.ListHosts(ctx, "", embedded.MaxListLimit)
		switch {
		case err != nil || lerr != nil:
			fail("opened, then reads fail: %v, %v", err, lerr)
		case h != want.ChainHead() || len(page.Hosts) != want.Hosts:
			fail("opened at head %v with %d hosts; the ledger was at %v with %d", h, len(page.Hosts), want.ChainHead(), want.Hosts)
		case !verified:
			fail("Open accepts it, verify does not")
		}
		unchanged++
		l.Close()
	}
	t.Logf("%d damaged copies: %d refused, %d unchanged where it matters (the same chain and head)", len(cases), refused, unchanged)
}

// inUse returns the bytes below the high-water mark of a bbolt file: its
// newest meta page's page count times its page size (bbolt's layout: a
// 16-byte page header, then magic, version, page size, flags, root bucket,
// freelist, page count, transaction id).
func inUse(t testing.TB, data []byte) int {
	t.Helper()
	ne := binary.NativeEndian
	ps := int(ne.Uint32(data[16+8:]))
	best, hwm := uint64(0), 0
	for _, off := range []int{0, ps} {
		m := data[off+16:]
		if tx := ne.Uint64(m[48:]); tx >= best {
			best, hwm = tx, int(ne.Uint64(m[40:]))*ps
		}
	}
	if hwm <= 0 || hwm > len(data) {
		t.Fatalf("high-water mark %d of a %d-byte file", hwm, len(data))
	}
	return hwm
}

// TestDamagedWhileOpen: a file damaged under an open ledger (here cut
// short, so that reading its pages faults) makes the read fail with an
// error, never a crash, and the ledger refuses every call from then on.
func TestDamagedWhileOpen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, embedded.FileName)
	l := openAt(t, path)
	ctx := as(alice)
	for i := range 300 {
		mustPutHost(t, l, ctx, host(fmt.Sprintf("cmp-%03d", i), "JP", "CompanyA"))
	}
	if err := os.Truncate(path, 8192); err != nil {
		t.Fatal(err)
	}
	if _, err := l.ListHosts(context.Background(), "", embedded.MaxListLimit); !errors.Is(err, ledger.ErrUnavailable) || !errors.Is(err, embedded.ErrCorrupt) {
		t.Fatalf("ListHosts of a cut file = %v, want ErrUnavailable and ErrCorrupt", err)
	}
	if err := l.Damaged(); err == nil {
		t.Fatal("the ledger is not marked damaged")
	}
	if _, _, err := l.PutHost(ctx, host("cmp-new", "JP", "CompanyA")); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("a write to a damaged ledger = %v, want ErrUnavailable", err)
	}
	if _, err := l.Lookup(context.Background(), nil, []string{"cmp-001"}); !errors.Is(err, ledger.ErrUnavailable) {
		t.Errorf("a lookup on a damaged ledger = %v, want ErrUnavailable", err)
	}
}
