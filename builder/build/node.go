package build

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"strings"

	"github.com/homecloud/homecloud/builder/diskimage"
	"github.com/homecloud/homecloud/builder/ext4fs"
	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/overlays"
)

// firstbootUnit is the one overlay unit enabled at boot; k3s and
// k3s-agent are started by it once the cluster agreed on roles.
const firstbootUnit = "homecloud-firstboot.service"

// Directories holding keys: only root may list them.
func privateDirs() []string {
	return []string{cluster.TLSDir, "/var/lib/rancher/k3s/server", secrets.K3sTLSDir, secrets.K3sTLSDir + "/etcd"}
}

// writeNode makes one node's image at tmp: a sparse copy of the base,
// the boot loader if the base lacks one, and the node's files in its
// root fs. Syncing and naming tmp are the caller's job.
func writeNode(ctx context.Context, in *inputs, s *spec.Spec, b *secrets.NodeBundle, stackFile secrets.File, tmp string) error {
	if err := diskimage.SparseCopy(ctx, in.base, tmp); err != nil {
		return err
	}
	for _, blob := range in.uboot {
		if err := writeBlob(tmp, blob); err != nil {
			return err
		}
	}
	fsys, err := ext4fs.Open(ctx, tmp, in.layout.RootOffset)
	if err != nil {
		return err
	}
	if err := populate(fsys, in, s, b, stackFile); err != nil {
		fsys.Close()
		return fmt.Errorf("node %s: %w", b.Name, err)
	}
	if err := fsys.Close(); err != nil {
		return fmt.Errorf("node %s: %w", b.Name, err)
	}
	return nil
}

func writeBlob(img string, blob ubootBlob) error {
	f, err := os.Open(blob.path)
	if err != nil {
		return fmt.Errorf("boot loader: %w", err)
	}
	defer f.Close()
	return diskimage.WriteAt(img, blob.offset, f)
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("fsync %s: %w", p, err)
	}
	return f.Close()
}

// populate queues every write for one node; ext4fs applies them in one
// debugfs run at Close.
func populate(fsys ext4fs.FS, in *inputs, s *spec.Spec, b *secrets.NodeBundle, stackFile secrets.File) error {
	node := nodeConfig(s, in.board, in.rootfs.armbian, b)
	nodeJSON, err := node.Marshal()
	if err != nil {
		return fmt.Errorf("node config: %w", err)
	}
	overlayFiles, err := overlays.Render(newOverlayData(node, in.board))
	if err != nil {
		return err
	}

	var files []file
	for _, f := range overlayFiles {
		files = append(files, file{path: f.Path, data: f.Data, mode: f.Mode})
	}
	files = append(files, file{path: cluster.NodeConfigPath, data: nodeJSON, mode: 0o600})
	for _, f := range b.Files {
		files = append(files, file{path: f.Path, data: f.Data, mode: f.Mode})
	}
	// The service stack's settings and generated passwords, for the deploy step.
	files = append(files, file{path: stackFile.Path, data: stackFile.Data, mode: stackFile.Mode})
	files = append(files, file{path: "/etc/ssh/authorized_keys/" + s.AdminUser, data: in.sshKeys, mode: 0o644})
	files = append(files, in.rootfs.noAutologin...)
	files = append(files, in.rootfs.armbianFiles...)
	if in.rootfs.machineID {
		// Clones sharing a machine-id share networkd's DHCP client id,
		// hence one lease. An empty file makes systemd generate one per
		// board at boot, without first-boot prompts.
		files = append(files, file{path: "/etc/machine-id", mode: 0o444})
	}
	firstbootLinks := parseInstall(overlayUnit(overlayFiles, firstbootUnit)).links(firstbootUnit, path.Join(etcUnitDir, firstbootUnit))
	if len(firstbootLinks) == 0 {
		return fmt.Errorf("overlay %s has no [Install] section to enable it by", firstbootUnit)
	}
	links := firstbootLinks
	for _, u := range in.rootfs.units {
		links = append(links, u.links...)
	}
	for _, tool := range k3sTools() {
		links = append(links, [2]string{"k3s", path.Join(path.Dir(k3sBinaryPath), tool)})
	}
	for _, u := range in.rootfs.masks {
		links = append(links, [2]string{"/dev/null", path.Join(etcUnitDir, u)})
	}
	links = append(links, in.rootfs.links...)

	// Directories first, parents before children.
	dirs := map[string]fs.FileMode{"/usr/local/bin": 0o755, cluster.DebsDir: 0o755}
	if in.k3sImages != "" {
		dirs[k3sImagesDir] = 0o755
	}
	for _, f := range files {
		dirs[path.Dir(f.path)] = 0o755
	}
	for _, l := range links {
		dirs[path.Dir(l[1])] = 0o755
	}
	for _, d := range privateDirs() {
		dirs[d] = 0o700
	}
	made := make([]ext4fs.Dir, 0, len(dirs))
	for d, mode := range dirs {
		made = append(made, ext4fs.Dir{Path: d, Mode: mode})
	}
	slices.SortFunc(made, func(a, b ext4fs.Dir) int { return strings.Compare(a.Path, b.Path) })
	if err := fsys.MakeDirs(made); err != nil {
		return err
	}

	if err := fsys.WriteFile(firstbootPath, bytes.NewReader(in.firstboot), 0o755, 0, 0); err != nil {
		return err
	}
	if err := fsys.CopyFile(k3sBinaryPath, in.k3s, 0o755, 0, 0); err != nil {
		return err
	}
	if in.k3sImages != "" {
		if err := fsys.CopyFile(path.Join(k3sImagesDir, in.k3sImagesName), in.k3sImages, 0o644, 0, 0); err != nil {
			return err
		}
	}
	for _, d := range in.debs {
		if err := fsys.CopyFile(path.Join(cluster.DebsDir, d.name), d.path, 0o644, 0, 0); err != nil {
			return err
		}
	}
	for _, f := range files {
		if err := fsys.WriteFile(f.path, bytes.NewReader(f.data), f.mode, 0, 0); err != nil {
			return err
		}
	}
	for _, l := range links {
		if err := fsys.Symlink(l[0], l[1]); err != nil {
			return err
		}
	}
	for _, p := range in.rootfs.remove {
		if err := fsys.Remove(p); err != nil {
			return err
		}
	}
	return nil
}

func overlayUnit(files []overlays.File, unit string) []byte {
	for _, f := range files {
		if f.Path == path.Join(etcUnitDir, unit) {
			return f.Data
		}
	}
	return nil
}
