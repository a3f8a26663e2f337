package build

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// The nodes install what the stack they run needs: Longhorn attaches
// volumes over iSCSI and backs up over NFS.
func TestNodePackages(t *testing.T) {
	emptyServices := filepath.Join(t.TempDir(), "cluster.yaml")
	if err := os.WriteFile(emptyServices, []byte("services:\n  # monitoring: off\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"defaults", nil, []string{"keepalived", "nftables", "unattended-upgrades", "sudo", "open-iscsi"}, []string{"nfs-common"}},
		{"longhorn off", []string{"--services", "longhorn=off"}, []string{"keepalived"}, []string{"open-iscsi", "nfs-common"}},
		{"nfs backups", []string{"--longhorn-backup-target", "nfs://nas.lan:/longhorn"}, []string{"open-iscsi", "nfs-common"}, nil},
		// A config whose services are all commented out still deploys
		// Longhorn, so its nodes still need iscsid.
		{"empty services: in the config", []string{"--config", emptyServices, "--services", "monitoring=off"}, []string{"open-iscsi"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			got := nodePackages(parseSpec(t, append([]string{"--board", "pine64"}, c.args...)))
			for _, p := range c.want {
				if !slices.Contains(got, p) {
					t.Errorf("%v lacks %s", got, p)
				}
			}
			for _, p := range c.not {
				if slices.Contains(got, p) {
					t.Errorf("%v has %s", got, p)
				}
			}
			for _, p := range got {
				if packageReasons[p] == "" {
					t.Errorf("%s has no reason to give when it is missing", p)
				}
			}
		})
	}
}
