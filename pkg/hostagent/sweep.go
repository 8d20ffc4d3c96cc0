package hostagent

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/ledgerfence/ledgerfence/pkg/cloud"
	"github.com/ledgerfence/ledgerfence/pkg/decide"
	"github.com/ledgerfence/ledgerfence/pkg/filter"
	"github.com/ledgerfence/ledgerfence/pkg/ledger"
)

// ServerLister lists the servers on a compute host, in all projects.
type ServerLister interface {
	ServersOnHost(ctx context.Context, host string) ([]cloud.Server, error)
}

// Lookuper is the part of ledger.Ledger that the sweep uses.
type Lookuper interface {
	Lookup(ctx context.Context, subjects []filter.Subject, hosts []string) (ledger.Lookup, error)
}

// Publisher sends violations on (to NATS, through pkg/notify, in a
// program). It must not block; false means the violation was dropped.
type Publisher interface {
	PublishViolation(v Violation) bool
}

// DefaultSweepBatch is how many servers one ledger lookup covers.
const DefaultSweepBatch = 100

// Sweeper finds the servers on its host whose regulations the host breaks.
type Sweeper struct {
	Host      string
	Servers   ServerLister
	Ledger    Lookuper
	Options   filter.Options
	Batch     int       // servers per ledger lookup; DefaultSweepBatch when 0
	Publisher Publisher // may be nil
	// Witness, when set, records the VMs the sweep sees come and go.
	Witness *Witness
	Clock   Clock
	Log     *zap.Logger
	Metrics *Metrics // may be nil
}

// Violation is a server on a host that one of its regulations forbids.
type Violation struct {
	InstanceUUID string         `json:"instance_uuid"`
	Name         string         `json:"name"`
	ProjectID    string         `json:"project_id"`
	Host         string         `json:"host"`
	Reason       filter.Reason  `json:"reason"`
	Subject      filter.Subject `json:"regulation,omitempty"`
	Detail       string         `json:"detail"`
	// Verdict is filter.Evaluate's verdict for the host.
	Verdict filter.Verdict `json:"-"`
	// Time is when the sweep found it.
	Time time.Time `json:"time"`
}

// SweepReport is the outcome of one sweep.
type SweepReport struct {
	Servers    int
	Regulated  int
	Violations []Violation
	// Height is the highest ledger height the lookups answered from.
	Height   uint64
	Duration time.Duration
}

// Sweep lists the servers on the host and decides each with filter.Evaluate
// against its project's and its own regulation and the host's record, as
// filterd would for a move to this host. Every violation is logged, counted
// and published. A ledger or Nova failure fails the whole sweep (no partial
// counts are reported).
func (s *Sweeper) Sweep(ctx context.Context) (SweepReport, error) {
	start := s.Clock.Now()
	rep, err := s.sweep(ctx)
	rep.Duration = s.Clock.Now().Sub(start)
	m := s.Metrics
	if err != nil {
		if m != nil {
			m.sweeps.WithLabelValues("error").Inc()
		}
		return rep, err
	}
	if m != nil {
		m.sweeps.WithLabelValues("ok").Inc()
		m.sweepDuration.Observe(rep.Duration.Seconds())
		m.lastSweep.Set(float64(s.Clock.Now().Unix()))
		m.servers.Set(float64(rep.Servers))
		counts := make(map[filter.Reason]int)
		for _, v := range rep.Violations {
			counts[v.Reason]++
		}
		for _, r := range filter.Reasons() {
			m.violations.WithLabelValues(string(r)).Set(float64(counts[r]))
		}
	}
	return rep, nil
}

func (s *Sweeper) sweep(ctx context.Context) (SweepReport, error) {
	log := s.Log
	if log == nil {
		log = zap.NewNop()
	}
	servers, err := s.Servers.ServersOnHost(ctx, s.Host)
	if err != nil {
		return SweepReport{}, fmt.Errorf("sweep: listing the servers on %s: %w", s.Host, err)
	}
	rep := SweepReport{Servers: len(servers)}
	batch := s.Batch
	if batch <= 0 {
		batch = DefaultSweepBatch
	}
	// One lookup at least, so that an empty host still checks the ledger.
	for lo := 0; lo == 0 || lo < len(servers); lo += batch {
		hi := min(lo+batch, len(servers))
		if err := s.decide(ctx, log, servers[lo:hi], &rep); err != nil {
			if s.Metrics != nil {
				s.Metrics.ledgerUp.Set(0)
			}
			return SweepReport{}, err
		}
	}
	if s.Metrics != nil {
		s.Metrics.ledgerUp.Set(1)
	}
	if s.Witness != nil {
		// A witness write that fails is tried again at the next sweep; it
		// does not fail the compliance sweep.
		_ = s.Witness.Observe(ctx, servers)
	}
	return rep, nil
}

func (s *Sweeper) decide(ctx context.Context, log *zap.Logger, servers []cloud.Server, rep *SweepReport) error {
	subs := make([][]filter.Subject, len(servers))
	query := make([]filter.Subject, 0, 2*len(servers))
	seen := make(map[filter.Subject]bool)
	for i, srv := range servers {
		var err error
		if subs[i], err = decide.Subjects(srv.ID, srv.ProjectID); err != nil {
			// The server's own id or project cannot name a regulation; what
			// can still applies.
			log.Warn("server id or project id cannot name a regulation", zap.String("instance_uuid", srv.ID),
				zap.String("project_id", srv.ProjectID), zap.Error(err))
			subs[i] = validSubjects(srv)
		}
		for _, sub := range subs[i] {
			if !seen[sub] {
				seen[sub] = true
				query = append(query, sub)
			}
		}
	}
	lk, err := s.Ledger.Lookup(ctx, query, []string{s.Host})
	if err != nil {
		return fmt.Errorf("sweep: reading regulations from the ledger: %w", err)
	}
	rep.Height = max(rep.Height, lk.Height)
	facts := decide.Facts(lk)
	for i, srv := range servers {
		cand := []filter.Candidate{{Name: s.Host}}
		res, err := decide.DecideSubjects(ctx, facts, nil, subs[i], nil, cand, s.Options)
		if err != nil {
			return fmt.Errorf("sweep: deciding for %s: %w", srv.ID, err)
		}
		if res.Regulated {
			rep.Regulated++
		}
		v := res.Verdicts[0]
		if v.Allowed {
			continue
		}
		vio := Violation{
			InstanceUUID: srv.ID, Name: srv.Name, ProjectID: srv.ProjectID, Host: s.Host,
			Reason: v.Reason, Subject: v.Subject, Detail: v.Detail(), Verdict: v, Time: s.Clock.Now(),
		}
		rep.Violations = append(rep.Violations, vio)
		log.Warn("violation: VM is on a host its regulation forbids",
			zap.String("instance_uuid", srv.ID), zap.String("project_id", srv.ProjectID),
			zap.String("host", s.Host), zap.String("reason", string(v.Reason)),
			zap.String("regulation", string(v.Subject)), zap.String("detail", vio.Detail),
			zap.String("status", srv.Status), zap.Uint64("ledger_height", lk.Height))
		if s.Publisher != nil {
			if !s.Publisher.PublishViolation(vio) && s.Metrics != nil {
				s.Metrics.publishFailure.Inc()
			}
		}
	}
	return nil
}

// validSubjects returns the subjects of srv that can name a regulation, in
// the one decision's order.
func validSubjects(srv cloud.Server) []filter.Subject {
	var out []filter.Subject
	if vm, err := decide.Subjects(srv.ID, ""); err == nil {
		out = append(out, vm...)
	}
	if p, err := decide.Subjects("", srv.ProjectID); err == nil {
		out = append(out, p...)
	}
	return out
}
