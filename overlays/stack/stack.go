// Package stack renders the family's service stack — Traefik, Longhorn,
// dnas, Nextcloud, calibre-web, Portainer, the dashboard, monitoring and
// backups — as the Kubernetes manifests k3s applies from its auto-deploy
// folder. One file per service, rendered from the cluster's settings, its
// plan and the secrets the builder generated once per cluster; a service
// switched off writes no file at all.
//
// The same function runs in the builder (homecloud-builder manifests) and
// on the node (the deploy step), so a user reads exactly what a node will
// apply.
package stack

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"text/template"
)

//go:embed templates/*.yaml.tmpl
var templates embed.FS

// ConfigPath is where the builder bakes Config into every image: 0600,
// root only, since it carries the stack's secrets.
const ConfigPath = "/etc/homecloud/stack.json"

// Services in the order their files are applied. k3s applies its folder
// in name order, so the file name carries this order.
func Services() []string {
	return []string{"traefik", "longhorn", "csi-driver-smb", "dnas", "nextcloud", "calibre-web",
		"portainer", "dashboard", "monitoring", "backups"}
}

// Config is everything the stack needs beyond the plan: the user's
// settings and the generated secrets. It is JSON in ConfigPath.
type Config struct {
	Settings Settings          `json:"settings"`
	Secrets  map[string]string `json:"secrets"`
}

// Settings are the parts of the cluster spec the stack is rendered from.
type Settings struct {
	Cluster   string `json:"cluster"`
	Domain    string `json:"domain,omitempty"`
	ACMEEmail string `json:"acme_email,omitempty"`
	VIP       string `json:"vip,omitempty"`
	// LAN is the home network as a CIDR; NFS exports to it. Empty when the
	// builder could not know it (DHCP without a VIP): then the private
	// address ranges are used.
	LAN string `json:"lan,omitempty"`
	// DataDisk is the file system label of the NAS disk; empty means the
	// NAS lives on the data-disk node's SD card under /srv/dnas.
	DataDisk string `json:"data_disk,omitempty"`
	// Services switches parts of the stack; a name missing is on.
	Services map[string]bool `json:"services,omitempty"`
	Storage  Storage         `json:"storage"`
	// BackupRepo is the restic repository the backups go to; empty means
	// /srv/backup on the data-disk node (a second disk is better: see README).
	BackupRepo string `json:"backup_repo,omitempty"`
	// LonghornBackupTarget is Longhorn's own backup target (nfs://; CIFS
	// and S3 need credentials, set in Longhorn's UI); empty leaves
	// Longhorn without one.
	LonghornBackupTarget string `json:"longhorn_backup_target,omitempty"`
}

// Storage are volume sizes as Kubernetes quantities (e.g. "10Gi").
type Storage struct {
	Nextcloud  string `json:"nextcloud"`
	Database   string `json:"database"`
	Monitoring string `json:"monitoring"`
}

// DefaultStorage fits a 32 GB SD card per node with Longhorn's replicas.
func DefaultStorage() Storage {
	return Storage{Nextcloud: "8Gi", Database: "2Gi", Monitoring: "2Gi"}
}

// Topology is the part of the cluster's plan the stack depends on.
type Topology struct {
	Servers      []string `json:"servers"`
	Agents       []string `json:"agents"`
	DataDiskNode string   `json:"data_disk_node"`
}

// Nodes are all nodes, servers first.
func (t Topology) Nodes() []string { return slices.Concat(t.Servers, t.Agents) }

// Input is what Render needs.
type Input struct {
	Config
	Topology
}

// File is one rendered manifest file for k3s' auto-deploy folder.
type File struct {
	Name    string // e.g. "homecloud-04-dnas.yaml"
	Service string
	Data    []byte
}

// On reports whether a service is switched on.
func (s Settings) On(name string) bool {
	on, ok := s.Services[name]
	return !ok || on
}

// Validate reports what is wrong with in, naming the field.
func (in Input) Validate() error {
	var errs []error
	s := in.Settings
	if s.Cluster == "" {
		errs = append(errs, errors.New("settings.cluster: empty"))
	}
	for name := range s.Services {
		if !slices.Contains(Services(), name) {
			errs = append(errs, fmt.Errorf("settings.services: unknown service %q (known: %s)", name, strings.Join(Services(), ", ")))
		}
	}
	if s.LAN != "" {
		if _, err := netip.ParsePrefix(s.LAN); err != nil {
			errs = append(errs, fmt.Errorf("settings.lan: %w", err))
		}
	}
	if s.ACMEEmail != "" && s.Domain == "" {
		errs = append(errs, errors.New("settings.acme_email: needs settings.domain"))
	}
	for field, q := range map[string]string{"storage.nextcloud": s.Storage.Nextcloud, "storage.database": s.Storage.Database, "storage.monitoring": s.Storage.Monitoring} {
		if err := CheckQuantity(q); err != nil {
			errs = append(errs, fmt.Errorf("settings.%s: %w", field, err))
		}
	}
	if len(in.Servers) == 0 {
		errs = append(errs, errors.New("topology.servers: none"))
	}
	if !slices.Contains(in.Nodes(), in.DataDiskNode) {
		errs = append(errs, fmt.Errorf("topology.data_disk_node: %q is not a node", in.DataDiskNode))
	}
	return errors.Join(errs...)
}

// Render writes the manifests of every service switched on, in apply
// order. A template error names the template and the field.
func Render(in Input) ([]File, error) {
	if err := in.Validate(); err != nil {
		return nil, fmt.Errorf("stack: %w", err)
	}
	imgs, err := LoadImages()
	if err != nil {
		return nil, err
	}
	var files []File
	for i, svc := range Services() {
		if !in.Settings.On(svc) {
			continue
		}
		name := svc + ".yaml.tmpl"
		raw, err := templates.ReadFile("templates/" + name)
		if err != nil {
			return nil, fmt.Errorf("stack template %s: %w", name, err)
		}
		t, err := template.New(name).Option("missingkey=error").Funcs(funcs(in, imgs)).Parse(string(raw))
		if err != nil {
			return nil, fmt.Errorf("stack template %s: %w", name, err)
		}
		var b bytes.Buffer
		if err := t.Execute(&b, newView(in)); err != nil {
			return nil, fmt.Errorf("stack template %s: %w", name, err)
		}
		files = append(files, File{Name: fmt.Sprintf("homecloud-%02d-%s.yaml", i+1, svc), Service: svc, Data: b.Bytes()})
	}
	return files, nil
}

// SecretKeys are the secrets the builder generates once per cluster.
func SecretKeys() []string {
	return []string{"samba-password", "syncthing-gui-password", "nextcloud-admin-password",
		"nextcloud-db-password", "calibre-admin-password", "portainer-admin-password",
		"grafana-admin-password", "restic-password", "dashboard-csrf-key"}
}

// LoadConfig reads the stack config the builder baked into a node.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("stack config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("stack config %s: %w", path, err)
	}
	return c, nil
}
