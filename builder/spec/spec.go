// Package spec is the cluster the user asked for: parsed from the command
// line and an optional YAML file, and validated as a whole before the
// builder writes anything.
//
// Addressing:
//
//   - Static (--network CIDR): --gateway and --first-ip are required. No
//     default first-ip is guessed: a guess inside the router's DHCP pool
//     gives two machines one address, which is miserable to debug. Node N
//     gets first-ip+N-1; the range must not contain the gateway or the VIP
//     (an error, not a silent skip, so addresses stay predictable).
//   - DHCP (--network dhcp, the default): --gateway and --first-ip are
//     errors (the router hands them out). --vip is optional; if given it
//     must carry its prefix (192.168.1.250/24), since keepalived needs the
//     subnet and nothing else names it. Without a VIP the cluster is
//     reached at any node's address.
//
// At least one --ssh-key is required: password logins are off on the nodes.
package spec

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Defaults for the flags a user may leave out.
const (
	DefaultOut       = "./out"
	DefaultName      = "homecloud"
	DefaultNetwork   = "dhcp"
	DefaultAdminUser = "homecloud"
	// Volume sizes that fit a 32 GB SD card per node with Longhorn's replicas.
	DefaultNextcloudSize  = "8Gi"
	DefaultDatabaseSize   = "2Gi"
	DefaultMonitoringSize = "2Gi"
)

// ServiceOn reports whether a service of the stack is on: every service
// is on unless switched off, as the stack renders it (a config file's
// empty `services:` leaves the map nil, and that must not switch off what
// the nodes need for the services that still deploy).
func (s *Spec) ServiceOn(name string) bool {
	on, ok := s.Services[name]
	return !ok || on
}

// KnownServices are the parts of the service stack that can be switched
// off; all are on unless the user says otherwise.
func KnownServices() []string {
	return []string{"traefik", "longhorn", "dashboard", "csi-driver-smb", "dnas", "nextcloud", "calibre-web",
		"portainer", "monitoring", "backups"}
}

// Spec is one cluster as the user described it. The yaml keys are the
// flag names: a file is the command line written down.
type Spec struct {
	// Config is the --config file the rest was read from, if any.
	Config string `yaml:"-"`

	Board     string `yaml:"board"`
	Nodes     int    `yaml:"nodes"`
	Out       string `yaml:"out"`
	BaseImage string `yaml:"base-image"`
	Name      string `yaml:"name"`
	// Network is "dhcp" or an IPv4 CIDR such as 192.168.1.0/24.
	Network   string `yaml:"network"`
	Gateway   string `yaml:"gateway"`
	FirstIP   string `yaml:"first-ip"`
	VIP       string `yaml:"vip"`
	Domain    string `yaml:"domain"`
	ACMEEmail string `yaml:"acme-email"`
	// SSHKeys are files of OpenSSH public keys for the admin user.
	SSHKeys   Paths  `yaml:"ssh-key"`
	Offline   bool   `yaml:"offline"`
	K3sBinary string `yaml:"k3s-binary"`
	K3sImages string `yaml:"k3s-images"`
	Debs      string `yaml:"debs"`
	// UBootDir holds the board's boot loader files when the base image has
	// none and the board's u-boot package is not installed on this machine.
	UBootDir  string `yaml:"uboot-dir"`
	AdminUser string `yaml:"admin-user"`
	// DataDisk is the file system label of the NAS disk, if there is one.
	DataDisk string `yaml:"data-disk"`
	// DataDiskNode is the number of the node the data disk is plugged
	// into; 0 lets the raft leader pick (the last agent).
	DataDiskNode int             `yaml:"data-disk-node"`
	Services     map[string]bool `yaml:"services"`
	// BackupRepo is the restic repository the nightly backup writes to:
	// an absolute path on the data-disk node (a second disk), or a restic
	// REST server (rest:https://host:8000/). Empty: /srv/backup there.
	BackupRepo string `yaml:"backup-repo"`
	// LonghornBackupTarget is Longhorn's backup target (nfs://).
	LonghornBackupTarget string `yaml:"longhorn-backup-target"`
	// Volume sizes of the stack, as Kubernetes quantities (8Gi).
	NextcloudSize  string `yaml:"nextcloud-size"`
	DatabaseSize   string `yaml:"database-size"`
	MonitoringSize string `yaml:"monitoring-size"`
	// TestK3s is a stand-in binary baked instead of k3s, for tests.
	TestK3s string `yaml:"test-k3s"`
}

// UsageError is a mistake in what the user asked for: the command exits
// with status 2 and the message says which flag and how to fix it.
type UsageError struct {
	// Field is the flag, e.g. "--nodes"; empty for the command line as a whole.
	Field string
	Err   error
}

func (e *UsageError) Error() string {
	if e.Field == "" {
		return e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *UsageError) Unwrap() error { return e.Err }

func usagef(field, format string, args ...any) *UsageError {
	return &UsageError{Field: field, Err: fmt.Errorf(format, args...)}
}

func defaults() *Spec {
	s := &Spec{Out: DefaultOut, Name: DefaultName, Network: DefaultNetwork, AdminUser: DefaultAdminUser,
		Services: map[string]bool{}, NextcloudSize: DefaultNextcloudSize, DatabaseSize: DefaultDatabaseSize,
		MonitoringSize: DefaultMonitoringSize}
	for _, name := range KnownServices() {
		s.Services[name] = true
	}
	return s
}

// Parse reads the command line and, with --config, the YAML file it names.
// A flag given on the command line wins over the same key in the file; for
// --ssh-key the command line's list replaces the file's, for --services
// each named service is switched as the command line says. Relative paths
// in the file are relative to the file. It checks syntax only: call
// Validate before acting on the result. flag.ErrHelp is returned as is.
func Parse(args []string, stderr io.Writer) (*Spec, error) {
	s := defaults()
	fs := newFlagSet(s)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(stderr, "Usage of homecloud-builder:")
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return nil, err
		}
		return nil, &UsageError{Err: fmt.Errorf("%w (-help lists the flags)", err)}
	}
	if fs.NArg() > 0 {
		return nil, usagef("", "unexpected argument %q: every setting is a flag (see -help)", fs.Arg(0))
	}
	if s.Config != "" {
		// Start again from the file and let the command line override it:
		// only flags that were given are set by a second parse.
		config := s.Config
		s = defaults()
		if err := loadFile(config, s); err != nil {
			return nil, err
		}
		fs = newFlagSet(s)
		if err := fs.Parse(args); err != nil {
			return nil, &UsageError{Err: err}
		}
	}
	for _, p := range []*string{&s.Out, &s.BaseImage, &s.K3sBinary, &s.K3sImages, &s.Debs, &s.TestK3s, &s.UBootDir} {
		*p = expandHome(*p)
	}
	for i := range s.SSHKeys {
		s.SSHKeys[i] = expandHome(s.SSHKeys[i])
	}
	if s.TestK3s != "" {
		fmt.Fprintf(stderr, "\n"+
			"WARNING: --test-k3s %s: baking a k3s STAND-IN instead of k3s.\n"+
			"WARNING: these images cannot run Kubernetes; they are for tests only.\n\n", s.TestK3s)
	}
	return s, nil
}

func newFlagSet(s *Spec) *flag.FlagSet {
	fs := flag.NewFlagSet("homecloud-builder", flag.ContinueOnError)
	// A mistake gets its one line from the caller, not the flag package's
	// copy and every flag after it; -help prints them (Parse).
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.StringVar(&s.Config, "config", s.Config, "read the cluster spec from this YAML `file` (its keys are these flags' names; flags win)")
	fs.StringVar(&s.Board, "board", s.Board, "board `name`: pine64 or qemu-virt")
	fs.IntVar(&s.Nodes, "nodes", s.Nodes, "number of nodes (one image each)")
	fs.StringVar(&s.Out, "out", s.Out, "output `dir` for the images and cluster/ (the cluster's secrets, reused by later runs)")
	fs.StringVar(&s.BaseImage, "base-image", s.BaseImage, "local base image `file` (.img or .img.xz) instead of the board's pinned download")
	fs.StringVar(&s.Name, "name", s.Name, "cluster `name`; nodes are <name>-node<N>")
	fs.StringVar(&s.Network, "network", s.Network, "\"dhcp\", or the LAN as a `CIDR` (e.g. 192.168.1.0/24) for static addresses")
	fs.StringVar(&s.Gateway, "gateway", s.Gateway, "default gateway `address` (static network)")
	fs.StringVar(&s.FirstIP, "first-ip", s.FirstIP, "`address` of node 1; node N gets first-ip+N-1 (static network)")
	fs.StringVar(&s.VIP, "vip", s.VIP, "virtual IP `address` the cluster is reached at (with dhcp: address/prefix, outside the DHCP pool)")
	fs.StringVar(&s.Domain, "domain", s.Domain, "DNS `name` the services are served under")
	fs.StringVar(&s.ACMEEmail, "acme-email", s.ACMEEmail, "e-mail `address` for Let's Encrypt (needs --domain)")
	fs.Var(&listFlag{p: (*[]string)(&s.SSHKeys), replace: len(s.SSHKeys) > 0}, "ssh-key", "`file` of OpenSSH public keys for the admin user (repeatable)")
	fs.BoolVar(&s.Offline, "offline", s.Offline, "use only the cache and local files, download nothing")
	fs.StringVar(&s.K3sBinary, "k3s-binary", s.K3sBinary, "local k3s arm64 `file` instead of the pinned download")
	fs.StringVar(&s.K3sImages, "k3s-images", s.K3sImages, "local k3s airgap images `file` instead of the pinned download (the pinned k3s release's k3s-airgap-images-arm64.tar.zst; none with --test-k3s)")
	fs.StringVar(&s.Debs, "debs", s.Debs, "`dir` of arm64 .debs to bake instead of downloading them")
	fs.StringVar(&s.UBootDir, "uboot-dir", s.UBootDir, "`dir` with the board's u-boot files, for a base image without a boot loader (default: the board's u-boot package dir on this machine)")
	fs.StringVar(&s.AdminUser, "admin-user", s.AdminUser, "admin account `name` made on every node")
	fs.StringVar(&s.DataDisk, "data-disk", s.DataDisk, "file system `label` of the NAS data disk, if any")
	fs.IntVar(&s.DataDiskNode, "data-disk-node", s.DataDiskNode, "`number` of the node the data disk is plugged into (default: the last agent, chosen at first boot)")
	fs.Var((*servicesFlag)(&s.Services), "services", "switch services `name=on|off,...` (all on by default: "+strings.Join(KnownServices(), ", ")+")")
	fs.StringVar(&s.BackupRepo, "backup-repo", s.BackupRepo, "restic `repository` for the nightly backup: an absolute path on the data-disk node or rest:https://HOST:PORT/PATH (default /srv/backup on that node)")
	fs.StringVar(&s.LonghornBackupTarget, "longhorn-backup-target", s.LonghornBackupTarget, "Longhorn's backup `target`: nfs://HOST:/PATH (default none)")
	fs.StringVar(&s.NextcloudSize, "nextcloud-size", s.NextcloudSize, "Nextcloud's volume `size` (e.g. 8Gi)")
	fs.StringVar(&s.DatabaseSize, "database-size", s.DatabaseSize, "Nextcloud database volume `size` (e.g. 2Gi)")
	fs.StringVar(&s.MonitoringSize, "monitoring-size", s.MonitoringSize, "Prometheus volume `size` (e.g. 2Gi)")
	fs.StringVar(&s.TestK3s, "test-k3s", s.TestK3s, "FOR TESTS: bake this stand-in `file` instead of k3s")
	return fs
}

func expandHome(p string) string {
	if !strings.HasPrefix(p, "~/") {
		return p
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return p
	}
	return filepath.Join(home, p[2:])
}
