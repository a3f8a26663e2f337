package build

import (
	"context"
	"errors"
	"path"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ProtonMail/go-crypto/openpgp"

	"github.com/homecloud/homecloud/builder/debarchive/debtest"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/internal/testimage"
)

// nodeWorld is a signed archive holding what the nodes install, with a
// dependency each, shaped like bookworm's.
func nodeWorld(t *testing.T) *debtest.Archive {
	a := &debtest.Archive{Codename: "bookworm", Compression: []string{".xz"}, Signer: debtest.NewKey(t, "Test Archive Key"),
		Pkgs: []debtest.Pkg{
			{Name: "keepalived", Version: "1:2.2.7-1+b2", Arch: "arm64", Priority: "optional", Depends: "libnl-3-200 (>= 3.2.27)"},
			{Name: "libnl-3-200", Version: "3.7.0-0.2+b1", Arch: "arm64", Priority: "optional"},
			{Name: "nftables", Version: "1.0.6-2+deb12u2", Arch: "arm64", Priority: "important", Depends: "libnftables1"},
			{Name: "libnftables1", Version: "1.0.6-2+deb12u2", Arch: "arm64", Priority: "optional"},
			{Name: "unattended-upgrades", Version: "2.9.1+nmu3", Arch: "all", Priority: "optional"},
			{Name: "sudo", Version: "1.9.13p3-1+deb12u1", Arch: "arm64", Priority: "optional"},
			{Name: "open-iscsi", Version: "2.1.8-1+deb12u1", Arch: "arm64", Priority: "optional", Depends: "libisns0, libopeniscsiusr (>= 2.1.8)"},
			{Name: "libisns0", Version: "0.101-0.2+b1", Arch: "arm64", Priority: "optional"},
			{Name: "libopeniscsiusr", Version: "2.1.8-1+deb12u1", Arch: "arm64", Priority: "optional"},
			{Name: "nfs-common", Version: "1:2.6.2-4+deb12u1", Arch: "arm64", Priority: "optional", Depends: "rpcbind"},
			{Name: "rpcbind", Version: "1.2.6-6+b1", Arch: "arm64", Priority: "optional"},
		}}
	a.Build(t)
	return a
}

// Without --debs the builder takes the nodes' packages from a Debian
// mirror through the signed Release → Packages → SHA-256 chain and bakes
// exactly what the spec needs; a .deb that does not match its index is
// refused with nothing written.
func TestBuildBakesDebsFromTheArchive(t *testing.T) {
	f := newFixture(t)
	base := testimage.Make(t, testimage.Options{})
	armbianize(t, base)
	world := nodeWorld(t)
	srv := debtest.Serve(t, world)
	build := func(t *testing.T, extra ...string) (*Result, string, error) {
		out := filepath.Join(t.TempDir(), "out")
		args := f.args(append([]string{"--debs", "", "--board", "qemu-virt", "--nodes", "1", "--base-image", base, "--out", out}, extra...)...)
		opts := f.opts()
		opts.CacheDir = t.TempDir()
		opts.HTTPClient, opts.DebianMirror = srv.Client(), srv.URL+"/debian"
		opts.DebianKeyring = openpgp.EntityList{world.Signer}
		res, err := Run(context.Background(), parseSpec(t, args), opts)
		return res, out, err
	}
	for _, c := range []struct {
		name      string
		args      []string
		want, not []string
	}{
		// The fixture base has no dpkg status, so the resolver takes it for
		// a Debian with every Priority important package: nftables is baked
		// as asked, its library is taken to be there.
		{"defaults", nil, []string{"keepalived", "libnl-3-200", "nftables", "unattended-upgrades", "sudo", "open-iscsi", "libisns0", "libopeniscsiusr"}, []string{"libnftables1", "nfs-common", "rpcbind"}},
		{"longhorn off", []string{"--services", "longhorn=off"}, []string{"keepalived", "sudo"}, []string{"open-iscsi", "libisns0"}},
		{"nfs backup target", []string{"--longhorn-backup-target", "nfs://nas.lan:/longhorn"}, []string{"open-iscsi", "nfs-common", "rpcbind"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			res, _, err := build(t, c.args...)
			if err != nil {
				t.Fatal(err)
			}
			img := res.Images[0].Path
			ls := debugfsR(t, img, "ls -p "+cluster.DebsDir)
			baked := map[string]bool{}
			for _, p := range world.Pkgs {
				deb := path.Base(p.Filename())
				if !strings.Contains(ls, "/"+deb+"/") {
					continue
				}
				baked[p.Name] = true
				if got := cat(t, img, path.Join(cluster.DebsDir, deb)); got != string(debtest.DebContent(p)) {
					t.Errorf("%s holds %q, not what the archive served", deb, got)
				}
			}
			for _, p := range c.want {
				if !baked[p] {
					t.Errorf("%s not baked (%s lists:\n%s)", p, cluster.DebsDir, ls)
				}
			}
			for _, p := range c.not {
				if baked[p] {
					t.Errorf("%s baked, but nothing in this spec needs it", p)
				}
			}
		})
	}
	t.Run("tampered deb", func(t *testing.T) {
		for _, p := range world.Pkgs {
			if p.Name == "open-iscsi" {
				world.Files["/"+p.Filename()] = []byte("evil")
			}
		}
		_, out, err := build(t)
		var ue *spec.UsageError
		if !errors.As(err, &ue) || ue.Field != "--debs" || !strings.Contains(err.Error(), "mismatch") {
			t.Fatalf("Run with a tampered .deb: %v, want a --debs usage error naming the mismatch", err)
		}
		if got := dirState(t, out); got != nil {
			t.Errorf("--out was made: %q", got)
		}
	})
}
