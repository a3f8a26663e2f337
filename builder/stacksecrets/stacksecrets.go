// Package stacksecrets makes the service stack's passwords and keys once
// per cluster, keeps them in <out>/cluster/stack-secrets.json, and builds
// the stack's config file baked into every image (stack.ConfigPath).
package stacksecrets

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"slices"

	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/firstboot/plan"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/overlays/stack"
)

// FileName is the secrets file inside <out>/cluster/.
const FileName = "stack-secrets.json"

// alphabet avoids characters that need quoting in a shell, a URL or a
// Samba config, and look-alikes a person copying a password would
// mistype (0/O, 1/l/I).
const alphabet = "abcdefghijkmnopqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// passwordLen gives 32 × log2(57) ≈ 186 bits.
const passwordLen = 32

// LoadOrCreate returns the stack's secrets from clusterDir, generating
// any key stack.SecretKeys names that the file lacks (a newer builder may
// add services) and never changing one that exists. clusterDir must exist:
// it is made by secrets.LoadOrCreate.
func LoadOrCreate(clusterDir string) (map[string]string, error) {
	if fi, err := os.Stat(clusterDir); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("stack secrets: cluster dir %s: make the cluster's secrets first (%v)", clusterDir, err)
	}
	path := filepath.Join(clusterDir, FileName)
	m := map[string]string{}
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("stack secrets: %w", err)
	default:
		if err := json.Unmarshal(b, &m); err != nil {
			return nil, fmt.Errorf("stack secrets %s: %w (restore it from your backup of %s)", path, err, clusterDir)
		}
	}
	changed := false
	for _, k := range stack.SecretKeys() {
		if m[k] != "" {
			continue
		}
		v, err := Password()
		if err != nil {
			return nil, err
		}
		m[k], changed = v, true
	}
	if changed {
		out, err := json.MarshalIndent(m, "", "  ")
		if err != nil {
			return nil, err
		}
		if err := cluster.WriteFileAtomic(path, append(out, '\n'), 0o600); err != nil {
			return nil, fmt.Errorf("stack secrets: %w", err)
		}
	}
	return m, nil
}

// Password is a fresh random password.
func Password() (string, error) {
	b := make([]byte, passwordLen)
	max := big.NewInt(int64(len(alphabet)))
	for i := range b {
		n, err := rand.Int(rand.Reader, max)
		if err != nil {
			return "", fmt.Errorf("generate password: %w", err)
		}
		b[i] = alphabet[n.Int64()]
	}
	return string(b), nil
}

// Settings are the stack's settings from a validated spec.
func Settings(s *spec.Spec) stack.Settings {
	st := stack.Settings{
		Cluster: s.Name, Domain: s.Domain, ACMEEmail: s.ACMEEmail, DataDisk: s.DataDisk,
		Services:             map[string]bool{},
		Storage:              stack.Storage{Nextcloud: s.NextcloudSize, Database: s.DatabaseSize, Monitoring: s.MonitoringSize},
		BackupRepo:           s.BackupRepo,
		LonghornBackupTarget: s.LonghornBackupTarget,
	}
	for name, on := range s.Services {
		if slices.Contains(stack.Services(), name) {
			st.Services[name] = on
		}
	}
	if v := s.VIPAddr(); v.IsValid() {
		st.VIP = v.String()
	}
	if p := s.Prefix(); p.IsValid() {
		st.LAN = p.Masked().String()
	}
	return st
}

// Config is the stack's config for the spec's cluster, its secrets made
// or loaded from <out>/cluster/.
func Config(s *spec.Spec) (stack.Config, error) {
	sec, err := LoadOrCreate(filepath.Join(s.Out, secrets.DirName))
	if err != nil {
		return stack.Config{}, err
	}
	return stack.Config{Settings: Settings(s), Secrets: sec}, nil
}

// ImageFile is the stack config as a file for a node's image: root only.
func ImageFile(s *spec.Spec) (secrets.File, error) {
	c, err := Config(s)
	if err != nil {
		return secrets.File{}, err
	}
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return secrets.File{}, err
	}
	return secrets.File{Path: stack.ConfigPath, Data: append(b, '\n'), Mode: 0o600}, nil
}

// Topology is where the plan every node computes from the full
// membership puts the stack: the same members, the same data-disk node
// (--data-disk-node, or the plan's default).
func Topology(s *spec.Spec) stack.Topology {
	var members []plan.Member
	for i, name := range s.NodeNames() {
		members = append(members, plan.Member{Name: name, Index: i + 1})
	}
	p := plan.Compute(members, s.DataDiskNodeName(), nil)
	return stack.Topology{Servers: p.Servers, Agents: p.Agents, DataDiskNode: p.DataDiskNode}
}

// Overcommitted names the nodes whose memory the stack, as the spec's
// plan places it, asks more of than boardMiB (stack.Memory.Overcommitted).
// It renders with placeholder secrets: passwords take no memory.
func Overcommitted(s *spec.Spec, boardMiB int) ([]string, error) {
	in := stack.Input{Config: stack.Config{Settings: Settings(s), Secrets: map[string]string{}}, Topology: Topology(s)}
	for _, k := range stack.SecretKeys() {
		in.Secrets[k] = "estimate-only"
	}
	files, err := stack.Render(in)
	if err != nil {
		return nil, err
	}
	m, err := stack.MemoryOf(files, in)
	if err != nil {
		return nil, err
	}
	return m.Overcommitted(in.Topology, boardMiB), nil
}
