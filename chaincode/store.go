package chaincode

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/hyperledger/fabric-chaincode-go/v2/shim"

	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
	"github.com/ledgerfence/ledgerfence/pkg/ledger/fabric/wire"
)

// Keys: "host/<name>", "regulation/<subject>", "registry/" (the one
// registry in force), "proposal/<id>" and "binding/<project>", so that no two
// kinds collide, hosts list in name order with a range query and proposals
// with another.
const (
	hostPrefix       = "host/"
	hostEnd          = "host0" // '0' follows '/'
	regulationPrefix = "regulation/"
	registryKey      = "registry/"
	proposalPrefix   = "proposal/"
	proposalEnd      = "proposal0"
	bindingPrefix    = "binding/"
)

func proposalKey(id string) string     { return proposalPrefix + id }
func bindingKey(project string) string { return bindingPrefix + project }

func hostKey(name string) string            { return hostPrefix + name }
func regulationKey(s filter.Subject) string { return regulationPrefix + string(s) }
func hostName(key string) string            { return strings.TrimPrefix(key, hostPrefix) }
func regulationSubject(key string) filter.Subject {
	return filter.Subject(strings.TrimPrefix(key, regulationPrefix))
}

// storedRegulation is a regulation as kept in the world state. A deleted
// regulation stays as a tombstone that records who deleted it; every read
// treats it as absent.
type storedRegulation struct {
	ledger.RegulationRecord
	Deleted bool `json:"deleted,omitempty"`
}

// store reads and writes records through the stub. Failures of the stub are
// plain errors (the peer could not serve the transaction), refusals are
// *wire.Error.
type store struct {
	stub shim.ChaincodeStubInterface
}

func (s store) tx() (string, time.Time, error) {
	ts, err := s.stub.GetTxTimestamp()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("transaction timestamp: %w", err)
	}
	return s.stub.GetTxID(), ts.AsTime().UTC(), nil
}

func (s store) host(name string) (ledger.HostRecord, bool, error) {
	var rec ledger.HostRecord
	b, err := s.stub.GetState(hostKey(name))
	if err != nil {
		return rec, false, fmt.Errorf("read host %s: %w", name, err)
	}
	if b == nil {
		return rec, false, nil
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("decode host %s: %w", name, err)
	}
	return rec, true, nil
}

// hosts reads the named hosts in one batch; unknown or invalid names are absent.
func (s store) hosts(names []string) (map[string]ledger.HostRecord, error) {
	out := make(map[string]ledger.HostRecord, len(names))
	keys := make([]string, 0, len(names))
	for _, n := range names {
		if filter.ValidateHostName(n) == nil {
			keys = append(keys, hostKey(n))
		}
	}
	if len(keys) == 0 {
		return out, nil
	}
	if len(keys) >= scanFrom {
		return s.scanHosts(keys, out)
	}
	vals, err := s.stub.GetMultipleStates(keys...)
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	for i, b := range vals {
		if b == nil {
			continue
		}
		var rec ledger.HostRecord
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", keys[i], err)
		}
		out[rec.Name] = rec
	}
	return out, nil
}

// scanFrom is the number of hosts from which one range scan over the span of
// their names beats reading them one by one: a peer without batched reads
// (GetMultipleStates falls back to one round trip per key) returns a range
// in pages of a hundred.
const scanFrom = 32

// scanHosts reads the hosts whose keys are given with one range scan from
// the smallest key to the largest.
func (s store) scanHosts(keys []string, out map[string]ledger.HostRecord) (map[string]ledger.HostRecord, error) {
	want := make(map[string]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	it, err := s.stub.GetStateByRange(slices.Min(keys), slices.Max(keys)+"\x00")
	if err != nil {
		return nil, fmt.Errorf("read hosts: %w", err)
	}
	defer it.Close()
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("read hosts: %w", err)
		}
		if !want[kv.Key] {
			continue
		}
		var rec ledger.HostRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out[rec.Name] = rec
	}
	return out, nil
}

func (s store) putHost(rec ledger.HostRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode host: %w", err)
	}
	return s.stub.PutState(hostKey(rec.Name), b)
}

func (s store) listHosts(after string, limit int) (ledger.HostPage, error) {
	page := ledger.HostPage{Hosts: []ledger.HostRecord{}}
	start := hostPrefix
	if after != "" {
		start = hostKey(after)
	}
	it, err := s.stub.GetStateByRange(start, hostEnd)
	if err != nil {
		return page, fmt.Errorf("list hosts: %w", err)
	}
	defer it.Close()
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return page, fmt.Errorf("list hosts: %w", err)
		}
		if kv.Key == start && after != "" {
			continue
		}
		if len(page.Hosts) == limit {
			page.Next = page.Hosts[limit-1].Name
			break
		}
		var rec ledger.HostRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return page, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		page.Hosts = append(page.Hosts, rec)
	}
	return page, nil
}

// allHosts reads every host, in name order.
func (s store) allHosts() ([]string, map[string]ledger.HostRecord, error) {
	it, err := s.stub.GetStateByRange(hostPrefix, hostEnd)
	if err != nil {
		return nil, nil, fmt.Errorf("list hosts: %w", err)
	}
	defer it.Close()
	var names []string
	hosts := make(map[string]ledger.HostRecord)
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return nil, nil, fmt.Errorf("list hosts: %w", err)
		}
		var rec ledger.HostRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		names = append(names, hostName(kv.Key))
		hosts[hostName(kv.Key)] = rec
	}
	return names, hosts, nil
}

func (s store) regulation(subj filter.Subject) (storedRegulation, bool, error) {
	var rec storedRegulation
	b, err := s.stub.GetState(regulationKey(subj))
	if err != nil {
		return rec, false, fmt.Errorf("read regulation %s: %w", subj, err)
	}
	if b == nil {
		return rec, false, nil
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, false, fmt.Errorf("decode regulation %s: %w", subj, err)
	}
	return rec, true, nil
}

// regulations reads the live regulations of some subjects in one batch,
// keyed by their canonical form. An invalid subject is refused.
func (s store) regulations(subjects []string) (map[filter.Subject]ledger.RegulationRecord, error) {
	out := make(map[filter.Subject]ledger.RegulationRecord, len(subjects))
	keys := make([]string, 0, len(subjects))
	for _, raw := range subjects {
		subj, err := filter.ParseSubject(raw)
		if err != nil {
			return nil, invalid(err)
		}
		keys = append(keys, regulationKey(subj))
	}
	if len(keys) == 0 {
		return out, nil
	}
	vals, err := s.stub.GetMultipleStates(keys...)
	if err != nil {
		return nil, fmt.Errorf("read regulations: %w", err)
	}
	for i, b := range vals {
		if b == nil {
			continue
		}
		var rec storedRegulation
		if err := json.Unmarshal(b, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", keys[i], err)
		}
		if !rec.Deleted {
			out[regulationSubject(keys[i])] = rec.RegulationRecord
		}
	}
	return out, nil
}

func (s store) putRegulation(rec storedRegulation) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("encode regulation: %w", err)
	}
	return s.stub.PutState(regulationKey(rec.Subject), b)
}

// getJSON reads key into v; found is false when the key has no value.
func (s store) getJSON(key string, v any) (found bool, err error) {
	b, err := s.stub.GetState(key)
	if err != nil {
		return false, fmt.Errorf("read %s: %w", key, err)
	}
	if b == nil {
		return false, nil
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

func (s store) putJSON(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return s.stub.PutState(key, b)
}

// registry is the registry in force, nil for none.
func (s store) registry() (*ledger.RegistryRecord, error) {
	var rec ledger.RegistryRecord
	found, err := s.getJSON(registryKey, &rec)
	if err != nil || !found {
		return nil, err
	}
	return &rec, nil
}

func (s store) putRegistry(rec ledger.RegistryRecord) error { return s.putJSON(registryKey, rec) }

// binding is project's binding, nil for none ("" is no project: none).
func (s store) binding(project string) (*ledger.BindingRecord, error) {
	if project == "" {
		return nil, nil
	}
	var rec ledger.BindingRecord
	found, err := s.getJSON(bindingKey(project), &rec)
	if err != nil || !found {
		return nil, err
	}
	return &rec, nil
}

func (s store) putBinding(rec ledger.BindingRecord) error {
	return s.putJSON(bindingKey(rec.Project), rec)
}

func (s store) proposal(id string) (ledger.ProposalRecord, bool, error) {
	var rec ledger.ProposalRecord
	found, err := s.getJSON(proposalKey(id), &rec)
	return rec, found, err
}

func (s store) putProposal(rec ledger.ProposalRecord) error {
	return s.putJSON(proposalKey(rec.ID), rec)
}

// proposals reads every proposal, in id order.
func (s store) proposals() ([]ledger.ProposalRecord, error) {
	it, err := s.stub.GetStateByRange(proposalPrefix, proposalEnd)
	if err != nil {
		return nil, fmt.Errorf("list proposals: %w", err)
	}
	defer it.Close()
	var out []ledger.ProposalRecord
	for it.HasNext() {
		kv, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list proposals: %w", err)
		}
		var rec ledger.ProposalRecord
		if err := json.Unmarshal(kv.Value, &rec); err != nil {
			return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
		}
		out = append(out, rec)
	}
	return out, nil
}

// emit sets the transaction's one chaincode event.
func (s store) emit(ev ledger.Event) error {
	b, err := json.Marshal(ev)
	if err != nil {
		return fmt.Errorf("encode event: %w", err)
	}
	return s.stub.SetEvent(wire.EventName(ev.Kind, ev.Op), b)
}

func (s store) history(kind ledger.Kind, key string) ([]ledger.Change, error) {
	it, err := s.stub.GetHistoryForKey(key)
	if err != nil {
		return nil, fmt.Errorf("history of %s: %w", key, err)
	}
	defer it.Close()
	changes := []ledger.Change{}
	for it.HasNext() {
		m, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("history of %s: %w", key, err)
		}
		c := ledger.Change{TxID: m.GetTxId(), Op: ledger.OpPut}
		if ts := m.GetTimestamp(); ts != nil {
			c.Time = ts.AsTime().UTC()
		}
		if m.GetIsDelete() || len(m.GetValue()) == 0 {
			c.Op = ledger.OpDelete
			changes = append(changes, c)
			continue
		}
		decodeAt := func(v any) error {
			if err := json.Unmarshal(m.GetValue(), v); err != nil {
				return fmt.Errorf("decode %s at %s: %w", key, m.GetTxId(), err)
			}
			return nil
		}
		switch kind {
		case ledger.KindHost:
			var rec ledger.HostRecord
			if err := decodeAt(&rec); err != nil {
				return nil, err
			}
			c.Writer = rec.Writer
			// An attestation keeps the claimer as the record's writer; the
			// change is the attestor's.
			if a := rec.Attestation; a != nil && a.TxID == m.GetTxId() {
				c.Op, c.Writer = ledger.OpAttest, a.Writer
			}
			c.Host = &rec
		case ledger.KindRegistry:
			var rec ledger.RegistryRecord
			if err := decodeAt(&rec); err != nil {
				return nil, err
			}
			c.Registry = &rec
			// the registry is applied by the last approval of its proposal
			if p, found, err := s.proposal(rec.Proposal); err == nil && found && len(p.Approvals) > 0 {
				c.Writer = p.Approvals[len(p.Approvals)-1].Writer
			}
		case ledger.KindProposal:
			var rec ledger.ProposalRecord
			if err := decodeAt(&rec); err != nil {
				return nil, err
			}
			if len(rec.Approvals) > 0 {
				c.Writer = rec.Approvals[len(rec.Approvals)-1].Writer
			}
			c.Proposal = &rec
		case ledger.KindBinding:
			var rec ledger.BindingRecord
			if err := decodeAt(&rec); err != nil {
				return nil, err
			}
			c.Writer = rec.Writer
			c.Binding = &rec
		case ledger.KindRegulation:
			var rec storedRegulation
			if err := decodeAt(&rec); err != nil {
				return nil, err
			}
			c.Writer = rec.Writer
			if rec.Deleted {
				c.Op = ledger.OpDelete
			} else {
				c.Regulation = &rec.RegulationRecord
			}
		}
		changes = append(changes, c)
	}
	// The peer returns the newest version first; the contract is oldest first.
	for i, j := 0, len(changes)-1; i < j; i, j = i+1, j-1 {
		changes[i], changes[j] = changes[j], changes[i]
	}
	return changes, nil
}
