package embedded

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/head"
)

// fill writes a small ledger:
//
//	1 host cmp-1 (JP)        4 host cmp-2
//	2 regulation vm (alice)  5 delete regulation vm
//	3 host cmp-1 (GB)        6 regulation project:p1
func fill(t *testing.T, path string) {
	t.Helper()
	l, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	alice := ledger.WithWriter(context.Background(), ledger.Writer{ID: "alice"})
	vm := filter.VMSubject("3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10")
	steps := []func() error{
		func() error {
			_, _, err := l.PutHost(alice, filter.Host{Name: "cmp-1", Country: "JP", Organizations: []string{"A"}})
			return err
		},
		func() error {
			_, _, err := l.PutRegulation(alice, vm, filter.Terms{Allow: []filter.Rule{{Country: "JP", Organization: "A"}}})
			return err
		},
		func() error {
			_, _, err := l.PutHost(alice, filter.Host{Name: "cmp-1", Country: "GB", Organizations: []string{"A"}})
			return err
		},
		func() error {
			_, _, err := l.PutHost(alice, filter.Host{Name: "cmp-2", Country: "DE", Organizations: []string{"B"}})
			return err
		},
		func() error { return l.DeleteRegulation(alice, vm) },
		func() error {
			_, _, err := l.PutRegulation(alice, filter.ProjectSubject("p1"), filter.Terms{Allow: []filter.Rule{{Country: "*", Organization: "A"}}})
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i+1, err)
		}
	}
}

// editEntry rewrites chain entry seq with edit; with rehash it also
// recomputes that entry's hash and tx id, as a forger would.
func editEntry(seq uint64, rehash bool, edit func(e *entry)) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		e, err := readEntry(tx, seq)
		if err != nil {
			return err
		}
		edit(e)
		if rehash {
			sum, err := e.hash()
			if err != nil {
				return err
			}
			e.TxID = hex.EncodeToString(sum[:])
		}
		data, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return tx.Bucket(bucketChain).Put(seqKey(seq), data)
	}
}

// forge rewrites the chain from entry seq on with edit applied to entry seq:
// every later entry relinked and rehashed, the state replayed and the head
// moved, so that the file is consistent with itself.
func forge(seq uint64, edit func(e *entry)) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error {
		h, err := readHead(tx)
		if err != nil {
			return err
		}
		prev := zeroHash
		if seq > 1 {
			p, err := readEntry(tx, seq-1)
			if err != nil {
				return err
			}
			prev = p.TxID
		}
		var last [32]byte
		for s := seq; s <= h.Seq; s++ {
			e, err := readEntry(tx, s)
			if err != nil {
				return err
			}
			if e.Kind == ledger.KindPlacement {
				if err := unstorePlacement(tx, e); err != nil {
					return err
				}
			}
			if s == seq {
				edit(e)
			}
			e.Prev = prev
			if last, err = e.hash(); err != nil {
				return err
			}
			e.TxID = hex.EncodeToString(last[:])
			prev = e.TxID
			data, _ := json.Marshal(e)
			if err := tx.Bucket(bucketChain).Put(seqKey(s), data); err != nil {
				return err
			}
			if e.Kind == ledger.KindPlacement {
				if err := storePlacement(tx, e); err != nil {
					return err
				}
				continue
			}
			rec, err := e.stateJSON()
			if err != nil {
				return err
			}
			name, _ := stateBucket(e.Kind)
			b, err := tx.CreateBucketIfNotExists(name)
			if err != nil {
				return err
			}
			if rec == nil {
				err = b.Delete([]byte(e.recordKey()))
			} else {
				err = b.Put([]byte(e.recordKey()), rec)
			}
			if err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(metaHead, append(seqKey(h.Seq), last[:]...))
	}
}

// unstorePlacement removes the records of e, a placement entry, from the
// placements buckets.
func unstorePlacement(tx *bolt.Tx, e *entry) error {
	r, err := e.records()
	if err != nil {
		return err
	}
	p := r.placement.Placement
	pk := placementKey(p)
	if err := tx.Bucket(bucketPlacements).Delete(pk); err != nil {
		return err
	}
	if err := tx.Bucket(bucketPlacementRefs).Delete(refKey(p)); err != nil {
		return err
	}
	if p.Project == "" {
		return nil
	}
	return tx.Bucket(bucketPlacementProjects).Delete(projectKey(p.Project, pk))
}

func put(bucket []byte, key string, value []byte) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket(bucket).Put([]byte(key), value) }
}

func del(bucket, key []byte) func(tx *bolt.Tx) error {
	return func(tx *bolt.Tx) error { return tx.Bucket(bucket).Delete(key) }
}

func TestVerify(t *testing.T) {
	vm := "vm:3f0c9a52-6b1e-4d8a-9c1e-2a7b5d4e6f10"
	tests := []struct {
		name      string
		tamper    func(tx *bolt.Tx) error // nil: untouched
		wantSeq   uint64
		wantWords string
	}{
		{"untouched", nil, 0, ""},
		{"host record edited", func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketHosts).Get([]byte("cmp-1"))
			return tx.Bucket(bucketHosts).Put([]byte("cmp-1"), []byte(strings.Replace(string(v), `"GB"`, `"JP"`, 1)))
		}, 3, `host record "cmp-1" differs`},
		{"regulation record edited", func(tx *bolt.Tx) error {
			v := tx.Bucket(bucketRegulations).Get([]byte("project:p1"))
			return tx.Bucket(bucketRegulations).Put([]byte("project:p1"), []byte(strings.Replace(string(v), `"alice"`, `"mallory"`, 1)))
		}, 6, `regulation record "project:p1" differs`},
		{"host record removed", del(bucketHosts, []byte("cmp-2")), 4, `host record "cmp-2" is missing`},
		{"deleted regulation brought back", func(tx *bolt.Tx) error {
			e, err := readEntry(tx, 2)
			if err != nil {
				return err
			}
			rec, _ := e.stateJSON()
			return tx.Bucket(bucketRegulations).Put([]byte(vm), rec)
		}, 0, "written by no chain entry"},
		{"host record added", put(bucketHosts, "cmp-9", []byte(`{"host":"cmp-9","country":"JP","organizations":["A"]}`)), 0, "written by no chain entry"},
		{"chain entry value edited", editEntry(3, false, func(e *entry) {
			e.Value = json.RawMessage(strings.Replace(string(e.Value), `"GB"`, `"JP"`, 1))
		}), 3, "does not match its hash"},
		{"chain entry writer edited", editEntry(2, false, func(e *entry) { e.Writer.ID = "mallory" }), 2, "does not match its hash"},
		{"chain entry time edited", editEntry(4, false, func(e *entry) { e.Time = e.Time.Add(-time.Hour) }), 4, "does not match its hash"},
		{"chain entry edited and rehashed", editEntry(3, true, func(e *entry) {
			e.Value = json.RawMessage(strings.Replace(string(e.Value), `"GB"`, `"JP"`, 1))
		}), 4, "previous hash"},
		{"chain entry removed", del(bucketChain, seqKey(3)), 3, "missing"},
		{"last chain entry removed", del(bucketChain, seqKey(6)), 6, "missing"},
		{"chain entry not JSON", put(bucketChain, string(seqKey(5)), []byte("{")), 5, "not a chain entry"},
		{"chain head moved back", func(tx *bolt.Tx) error {
			e, err := readEntry(tx, 5)
			if err != nil {
				return err
			}
			sum, _ := e.hash()
			return tx.Bucket(bucketMeta).Put(metaHead, append(seqKey(5), sum[:]...))
		}, 6, "beyond the chain head"},
		{"history index entry removed", del(bucketIndex, indexKey(ledger.KindHost, "cmp-1", 3)), 3, "history index"},
		{"history index entry added", put(bucketIndex, string(indexKey(ledger.KindHost, "cmp-2", 1)), nil), 0, "history index"},
		{"regulation owner forged, chain rewritten", forge(2, func(e *entry) {
			e.Value = json.RawMessage(strings.Replace(string(e.Value), `"owner":"alice"`, `"owner":"mallory"`, 1))
		}), 2, `owner "mallory", want "alice"`},
		{"host value not normalised, chain rewritten", forge(4, func(e *entry) {
			e.Value = json.RawMessage(strings.Replace(string(e.Value), `"DE"`, `"de"`, 1))
		}), 4, "not the normalised record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), FileName)
			fill(t, path)
			if tt.tamper != nil {
				db, err := bolt.Open(path, 0o600, nil)
				if err != nil {
					t.Fatal(err)
				}
				if err := db.Update(tt.tamper); err != nil {
					t.Fatalf("tamper: %v", err)
				}
				if err := db.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if tt.tamper != nil {
				if l, err := Open(path); err == nil || !errors.Is(err, ErrTampered) || !errors.Is(err, ledger.ErrUnavailable) {
					if l != nil {
						l.Close()
					}
					t.Fatalf("Open of a tampered file: %v, want ErrTampered and ErrUnavailable", err)
				}
			}
			l, err := OpenReadOnly(path)
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			rep, err := l.Verify(context.Background())
			if tt.wantWords == "" {
				if err != nil || !rep.OK || rep.Height != 6 || rep.Hosts != 2 || rep.Regulations != 1 || len(rep.Head) != 64 {
					t.Fatalf("Verify = %+v, %v; want OK at height 6 with 2 hosts and 1 regulation", rep, err)
				}
				return
			}
			if !errors.Is(err, ErrTampered) {
				t.Fatalf("err = %v, want ErrTampered (report %+v)", err, rep)
			}
			if rep.OK || rep.BrokenSeq != tt.wantSeq || !strings.Contains(rep.Problem, tt.wantWords) {
				t.Errorf("report %+v, want broken entry %d and a problem saying %q", rep, tt.wantSeq, tt.wantWords)
			}
			if !strings.Contains(err.Error(), rep.Problem) {
				t.Errorf("error %q does not say %q", err, rep.Problem)
			}
		})
	}
}

// TestVerifyHead shows what heads are for: a chain rewritten from its first
// entry, in a way that every rule accepts, is caught by the head file; and
// when the head file is rewritten too, by a head kept elsewhere.
func TestVerifyHead(t *testing.T) {
	path := filepath.Join(t.TempDir(), FileName)
	fill(t, path)
	l, err := OpenReadOnly(path)
	if err != nil {
		t.Fatal(err)
	}
	before, err := l.Verify(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	kept := before.ChainHead()

	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(forge(1, func(e *entry) {
		e.Value = json.RawMessage(strings.Replace(string(e.Value), `"JP"`, `"FR"`, 1))
	}))
	db.Close()
	if err != nil {
		t.Fatal(err)
	}

	verifyWith := func(opts ...VerifyOption) (VerifyReport, error) {
		t.Helper()
		l, err := OpenReadOnly(path)
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Verify(context.Background(), opts...)
	}
	rep, err := verifyWith()
	if !errors.Is(err, ErrTampered) || rep.BrokenSeq != 1 || !strings.Contains(rep.Problem, "head file") {
		t.Fatalf("a consistent rewrite: Verify = %+v, %v; want the head file to catch it at entry 1", rep, err)
	}

	// The forger rewrites the head file too: only the head kept elsewhere
	// catches it.
	if _, err := Adopt(context.Background(), path); err == nil {
		t.Fatal("Adopt over an existing head file succeeded")
	}
	forged, err := verifyWith(withoutHeadFile())
	if err != nil {
		t.Fatal(err)
	}
	if err := writeHeadFile(HeadFilePath(path), remembered{Genesis: forged.Genesis, Head: forged.ChainHead()}); err != nil {
		t.Fatal(err)
	}
	if rep, err := verifyWith(); err != nil || forged.Head == before.Head {
		t.Fatalf("after a rewrite of the head file too: Verify = %+v, %v; heads %s before, %s after", rep, err, before.Head, forged.Head)
	}
	rep, err = verifyWith(ExpectHead(kept))
	if !errors.Is(err, ErrTampered) || rep.BrokenSeq != kept.Height || !strings.Contains(rep.Problem, "expected head") {
		t.Errorf("ExpectHead(%s) of the rewritten chain: %+v, %v; want the expected head not found", kept, rep, err)
	}
	if l, err := Open(path); err != nil {
		t.Errorf("Open of a chain and head file rewritten together: %v (only a head kept elsewhere tells)", err)
	} else {
		l.Close()
	}
}

func TestVerifyEmpty(t *testing.T) {
	l, err := Open(filepath.Join(t.TempDir(), FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	rep, err := l.Verify(context.Background())
	if err != nil || !rep.OK || rep.Height != 0 || rep.Head != "" || rep.HeadFile == nil || rep.HeadFile.Hash != head.ZeroHash {
		t.Errorf("Verify of an empty ledger = %+v, %v", rep, err)
	}
}
