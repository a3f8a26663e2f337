package node

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/homecloud/homecloud/internal/cluster"
)

// Steps in order. Every step is idempotent, so a node that restarts simply
// runs them again; progress records what was done for the status page and
// for the one-time OS preparation.
var Steps = []string{"network", "discover", "agree", "roles", "k3s", "vip", "deploy", "serve"}

// progress is the node's record in <state dir>/progress.json.
type progress struct {
	Step     string   `json:"step"`
	Done     []string `json:"done"`
	Prepared bool     `json:"os_prepared"`
	// Bootstrapped says this node called BootstrapCluster (once, ever).
	Bootstrapped bool `json:"bootstrapped"`
	Boots        int  `json:"boots"`
	// K3sAddr is the address this node's k3s first came up at: a server's
	// etcd member keeps it for good.
	K3sAddr string `json:"k3s_addr,omitempty"`
}

func loadProgress(dir string) (progress, error) {
	var p progress
	b, err := os.ReadFile(filepath.Join(dir, "progress.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return p, fmt.Errorf("read progress: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		// A torn write cannot happen (atomic rename), so this is damage:
		// start over; every step is idempotent and raft keeps its own state.
		return progress{}, nil
	}
	return p, nil
}

func (p *progress) save(dir string) error {
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	return cluster.WriteFileAtomic(filepath.Join(dir, "progress.json"), append(b, '\n'), 0o600)
}

func (p *progress) markDone(step string) {
	if !slices.Contains(p.Done, step) {
		p.Done = append(p.Done, step)
	}
}
