package build

import (
	"slices"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/boards"
)

// The nodes install what the stack they run needs: Longhorn attaches
// volumes over iSCSI and backs up over NFS.
func TestNodePackages(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		want []string
		not  []string
	}{
		{"defaults", nil, []string{"keepalived", "nftables", "unattended-upgrades", "sudo", "open-iscsi"}, []string{"nfs-common"}},
		{"longhorn off", []string{"--services", "longhorn=off"}, []string{"keepalived"}, []string{"open-iscsi", "nfs-common"}},
		{"nfs backups", []string{"--longhorn-backup-target", "nfs://nas.lan:/longhorn"}, []string{"open-iscsi", "nfs-common"}, nil},
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

// A service the spec does not name is on, as the stack renders it: its
// nodes need what it needs.
func TestNodePackagesServiceUnnamed(t *testing.T) {
	s := parseSpec(t, []string{"--board", "pine64"})
	s.Services = map[string]bool{"monitoring": false}
	if got := nodePackages(s); !slices.Contains(got, "open-iscsi") {
		t.Errorf("%v lacks open-iscsi, though Longhorn deploys", got)
	}
}

// The builder warns when the stack cannot fit the boards' memory (by the
// README's estimates): 3 PINE A64-LTS boards cannot hold it all, 4 can.
func TestWarnMemory(t *testing.T) {
	board, err := boards.Load("pine64")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		args []string
		warn bool
	}{
		{[]string{"--nodes", "4"}, false},
		{[]string{"--nodes", "3"}, true},
		{[]string{"--nodes", "3", "--services", "monitoring=off,dashboard=off,portainer=off,nextcloud=off,longhorn=off,calibre-web=off"}, false},
	} {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			var out strings.Builder
			warnMemory(parseSpec(t, append([]string{"--board", "pine64"}, c.args...)), board, &out)
			if got := strings.Contains(out.String(), "WARNING: memory:"); got != c.warn {
				t.Errorf("warning %v, want %v:\n%s", got, c.warn, out.String())
			}
		})
	}
}
