package debarchive

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/homecloud/homecloud/builder/fetch"
)

// TestRealBookwormKeepalived resolves and downloads keepalived from Debian's
// mirror with the embedded keyring. It needs the network, so it runs only
// with HOMECLOUD_NET_TESTS=1: CI must not depend on a mirror.
func TestRealBookwormKeepalived(t *testing.T) {
	if os.Getenv("HOMECLOUD_NET_TESTS") != "1" {
		t.Skip("set HOMECLOUD_NET_TESTS=1 to fetch from deb.debian.org")
	}
	keyring, err := BookwormKeyring()
	if err != nil {
		t.Fatal(err)
	}
	cache, err := fetch.NewCache(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	a := &Archive{BaseURL: "http://deb.debian.org/debian", Suite: "bookworm", Component: "main", Arch: "arm64", Keyring: keyring, Cache: cache}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	start := time.Now()
	pkgs, err := a.Resolve(ctx, []string{"keepalived"})
	if err != nil {
		t.Fatal(err)
	}
	resolved := time.Since(start)
	paths, err := a.Download(ctx, pkgs)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, p := range pkgs {
		st, err := os.Stat(paths[i])
		if err != nil {
			t.Fatal(err)
		}
		if st.Size() != p.Size {
			t.Errorf("%s: %d bytes on disk, index says %d", p.DebName(), st.Size(), p.Size)
		}
		total += st.Size()
		t.Logf("%-40s %-28s %-6s %9d", p.Name, p.Version, p.Architecture, p.Size)
	}
	names := map[string]bool{}
	for _, p := range pkgs {
		names[p.Name] = true
	}
	for _, want := range []string{"keepalived", "libnl-3-200"} {
		if !names[want] {
			t.Errorf("closure lacks %s", want)
		}
	}
	if names["libc6"] {
		t.Error("closure has libc6, which is Priority required")
	}
	// The same files, under their Debian names, pass the --debs DIR check.
	dir := t.TempDir()
	for i, p := range pkgs {
		if err := os.Symlink(paths[i], filepath.Join(dir, p.DebName())); err != nil {
			t.Fatal(err)
		}
	}
	local, err := LocalDebs(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(local) != len(pkgs) {
		t.Errorf("LocalDebs found %d of %d packages", len(local), len(pkgs))
	}
	if out := os.Getenv("HOMECLOUD_DEBS_OUT"); out != "" {
		// For trying the closure by hand (dpkg -i in a chroot).
		for i, p := range pkgs {
			b, err := os.ReadFile(paths[i])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(out, p.DebName()), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("debs=%d total_bytes=%d resolve_s=%.1f download_s=%.1f", len(pkgs), total, resolved.Seconds(), time.Since(start).Seconds()-resolved.Seconds())
}
