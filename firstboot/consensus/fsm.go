package consensus

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"sync"

	"github.com/hashicorp/raft"

	"github.com/homecloud/homecloud/firstboot/plan"
)

// command is one raft log entry. JSON keeps the log readable with
// `bbolt` tools and lets a newer release add operations.
type command struct {
	Op   string     `json:"op"`
	Plan *plan.Plan `json:"plan,omitempty"`
}

const opSetPlan = "set-plan"

// state is what the FSM holds and what a snapshot stores.
type state struct {
	Plan *plan.Plan `json:"plan,omitempty"`
}

// fsm applies committed commands. The plan is replaced as a whole, never
// mutated, so readers get a consistent copy.
type fsm struct {
	mu      sync.Mutex
	st      state
	changed chan struct{} // closed and replaced on every change
}

func newFSM() *fsm { return &fsm{changed: make(chan struct{})} }

func (f *fsm) Apply(l *raft.Log) any {
	if l.Type != raft.LogCommand {
		return nil
	}
	var c command
	if err := json.Unmarshal(l.Data, &c); err != nil {
		return fmt.Errorf("decode raft command at index %d: %w", l.Index, err)
	}
	switch c.Op {
	case opSetPlan:
		if c.Plan == nil {
			return fmt.Errorf("raft command at index %d: set-plan without a plan", l.Index)
		}
		f.set(state{Plan: c.Plan})
		return nil
	default:
		// A newer release wrote it; skipping keeps this node in the cluster.
		return fmt.Errorf("raft command at index %d: unknown op %q", l.Index, c.Op)
	}
}

func (f *fsm) set(st state) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.st = st
	close(f.changed)
	f.changed = make(chan struct{})
}

// current returns a deep copy of the plan and a channel closed on the next change.
func (f *fsm) current() (plan.Plan, bool, <-chan struct{}) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.st.Plan == nil {
		return plan.Plan{}, false, f.changed
	}
	return clonePlan(*f.st.Plan), true, f.changed
}

func clonePlan(p plan.Plan) plan.Plan {
	p.Members = slices.Clone(p.Members)
	p.Servers = slices.Clone(p.Servers)
	p.Agents = slices.Clone(p.Agents)
	p.Priorities = maps.Clone(p.Priorities)
	return p
}

func (f *fsm) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, err := json.Marshal(f.st)
	if err != nil {
		return nil, fmt.Errorf("encode raft snapshot: %w", err)
	}
	return snapshot(b), nil
}

func (f *fsm) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st state
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("decode raft snapshot: %w", err)
	}
	f.set(st)
	return nil
}

// snapshot is the encoded state taken under the FSM lock; Persist may run
// concurrently with new Applies.
type snapshot []byte

func (s snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := sink.Write(s); err != nil {
		sink.Cancel()
		return fmt.Errorf("write raft snapshot: %w", err)
	}
	return sink.Close()
}

func (s snapshot) Release() {}
