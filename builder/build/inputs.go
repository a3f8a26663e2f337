package build

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/homecloud/homecloud/boards"
	"github.com/homecloud/homecloud/builder/debarchive"
	"github.com/homecloud/homecloud/builder/diskimage"
	"github.com/homecloud/homecloud/builder/fetch"
	"github.com/homecloud/homecloud/builder/spec"
)

// inputs is everything a node image is made of, resolved and checked
// before anything is written to --out.
type inputs struct {
	board     *boards.Board
	base      string // raw (decompressed) base image
	layout    diskimage.Layout
	rootfs    baseRootFS
	firstboot []byte
	k3s       string
	k3sImages string // "" when none is baked
	// k3sImagesName is its file name in the image: k3s picks the
	// decompressor by extension, and the cache names files by digest.
	k3sImagesName string
	debs          []debFile
	uboot         []ubootBlob // nil when the base has a boot loader or the board needs none
	sshKeys       []byte
}

type debFile struct {
	path string // on the build machine
	name string // file name in the image
}

type ubootBlob struct {
	path   string
	offset int64
}

func usage(field string, err error) error { return &spec.UsageError{Field: field, Err: err} }

// prepare resolves and checks every input. It writes only to the
// download cache, never to --out.
func prepare(ctx context.Context, s *spec.Spec, board *boards.Board, opts Options, cache *fetch.Cache) (*inputs, error) {
	in := &inputs{board: board}
	var err error
	if in.sshKeys, err = s.AuthorizedKeys(); err != nil {
		return nil, err
	}
	if in.base, err = baseImage(ctx, s, board, cache, opts); err != nil {
		return nil, err
	}
	if in.layout, err = diskimage.Inspect(in.base); err != nil {
		return nil, usage("--base-image", err)
	}
	if in.uboot, err = ubootBlobs(s, board, in.layout); err != nil {
		return nil, err
	}
	if in.rootfs, err = inspectRootFS(ctx, in.base, in.layout.RootOffset); err != nil {
		return nil, usage("--base-image", err)
	}
	if in.k3s, err = k3sBinary(ctx, s, cache, opts); err != nil {
		return nil, err
	}
	if in.k3sImages, in.k3sImagesName, err = k3sImages(ctx, s, cache, opts); err != nil {
		return nil, err
	}
	if in.debs, err = debs(ctx, s, cache, opts, in.rootfs.installed); err != nil {
		return nil, err
	}
	if opts.Firstboot == nil {
		return nil, errors.New("no homecloud-firstboot binary given to the build")
	}
	if in.firstboot, err = opts.Firstboot(); err != nil {
		return nil, err
	}
	if err := checkARM64("homecloud-firstboot", bytes.NewReader(in.firstboot)); err != nil {
		return nil, err
	}
	if err := checkRootFSSpace(s, in); err != nil {
		return nil, err
	}
	return in, nil
}

// baseImage returns a raw base image: the user's .img as it is, or a .xz
// (theirs or downloaded) decompressed into the cache, keyed by the
// compressed file's digest so the next build skips the work.
func baseImage(ctx context.Context, s *spec.Spec, board *boards.Board, cache *fetch.Cache, opts Options) (string, error) {
	src := s.BaseImage
	if src == "" {
		url, sum, err := board.BaseImageURL()
		if err != nil {
			return "", usage("--base-image", err)
		}
		if src, err = getInput(ctx, cache, fetch.Input{
			Name: "base image for " + board.Name, URL: url, SHA256: sum, Flag: "--base-image FILE",
		}, "--base-image"); err != nil {
			return "", err
		}
	}
	xz, err := isXZ(src)
	if err != nil {
		return "", usage("--base-image", err)
	}
	if !xz {
		return src, nil
	}
	sum, err := fetch.HashFile(src)
	if err != nil {
		return "", usage("--base-image", err)
	}
	dir := filepath.Join(cache.Dir, "base")
	raw := filepath.Join(dir, sum+".img")
	err = checkCachedBase(ctx, raw)
	switch {
	case err == nil:
		return raw, nil
	case ctx.Err() != nil:
		return "", ctx.Err()
	case !errors.Is(err, errNoCachedBase):
		opts.logger().Warn("the decompressed base image in the cache cannot be trusted, decompressing it again", "path", raw, "reason", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("base image cache: %w", err)
	}
	// A stale record must not vouch for the new image if we stop midway.
	if err := os.Remove(baseRecordPath(raw)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("base image cache: %w", err)
	}
	progress(opts.Progress, "decompressing %s into the cache", src)
	tmp := raw + ".tmp"
	if err := diskimage.DecompressXZ(ctx, src, tmp); err != nil {
		os.Remove(tmp)
		if ctx.Err() != nil {
			return "", err
		}
		return "", usage("--base-image", err)
	}
	rawSum, err := hashImage(ctx, tmp)
	if err == nil {
		err = renameSync(tmp, raw)
	}
	if err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("base image cache: %w", err)
	}
	if err := recordBase(raw, rawSum); err != nil {
		return "", fmt.Errorf("base image cache: %w", err)
	}
	return raw, nil
}

func isXZ(path string) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	head := make([]byte, 6)
	if _, err := f.ReadAt(head, 0); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return bytes.Equal(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}), nil
}

// getInput fetches through the cache; a missing offline input and a
// digest mismatch are the user's to fix, so they name the flag.
func getInput(ctx context.Context, cache *fetch.Cache, in fetch.Input, field string) (string, error) {
	p, err := cache.GetInput(ctx, in)
	switch {
	case err == nil:
		return p, nil
	case errors.Is(err, fetch.ErrNotCached):
		return "", usage(field, err)
	case errors.Is(err, fetch.ErrDigestMismatch):
		return "", usage(field, fmt.Errorf("%w: the download is not the pinned file; pass %s to use a local copy", err, in.Flag))
	}
	return "", err
}

// ubootBlobs decides whether the board's boot loader must be written: only
// when the base has none (an Armbian base brings its own, built for it).
func ubootBlobs(s *spec.Spec, board *boards.Board, l diskimage.Layout) ([]ubootBlob, error) {
	if board.UBoot == nil || l.HasBootloader {
		return nil, nil
	}
	dir, field := board.UBoot.Dir, "--uboot-dir"
	if s.UBootDir != "" {
		dir = s.UBootDir
	}
	tableEnd := int64(512)
	if l.Table == "gpt" {
		tableEnd = 34 * 512
	}
	var blobs []ubootBlob
	for _, b := range board.UBoot.Blobs {
		p := filepath.Join(dir, b.File)
		fi, err := os.Stat(p)
		if err != nil {
			return nil, usage(field, fmt.Errorf("the base image has no boot loader and %s is missing: install %s:arm64 on this machine (dpkg --add-architecture arm64; apt-get install %s:arm64) or pass --uboot-dir DIR holding %s",
				p, board.UBoot.Package, board.UBoot.Package, blobNames(board.UBoot.Blobs)))
		}
		if b.Offset < tableEnd || b.Offset+fi.Size() > l.FirstPartitionOffset {
			return nil, usage("--base-image", fmt.Errorf("%s (%d bytes at byte %d) does not fit between the %s partition table and the first partition at byte %d: use a base laid out for %s (MBR, root partition at %d)",
				b.File, fi.Size(), b.Offset, l.Table, l.FirstPartitionOffset, board.Name, board.Disk.RootPartitionStart))
		}
		blobs = append(blobs, ubootBlob{path: p, offset: b.Offset})
	}
	return blobs, nil
}

func blobNames(bs []boards.Blob) string {
	var names []string
	for _, b := range bs {
		names = append(names, b.File)
	}
	return strings.Join(names, " and ")
}

func k3sBinary(ctx context.Context, s *spec.Spec, cache *fetch.Cache, opts Options) (string, error) {
	switch {
	case s.TestK3s != "":
		// A stand-in (a script, a fake): spec.Parse already warned loudly.
		progress(opts.Progress, "WARNING: baking the k3s stand-in %s instead of k3s: test images only", s.TestK3s)
		return s.TestK3s, nil
	case s.K3sBinary != "":
		f, err := os.Open(s.K3sBinary)
		if err != nil {
			return "", usage("--k3s-binary", err)
		}
		defer f.Close()
		if err := checkARM64(s.K3sBinary, f); err != nil {
			return "", usage("--k3s-binary", fmt.Errorf("%w: give k3s-arm64 from k3s' release page", err))
		}
		return s.K3sBinary, nil
	}
	rel := k3sRelease()
	if opts.K3s != nil {
		rel = *opts.K3s
	}
	return getInput(ctx, cache, fetch.Input{
		Name: "k3s " + rel.Version + " arm64 binary", URL: rel.URL, SHA256: rel.SHA256, Flag: "--k3s-binary FILE",
	}, "--k3s-binary")
}

// checkARM64 refuses anything but a 64-bit ARM ELF executable.
func checkARM64(name string, r interface {
	ReadAt([]byte, int64) (int, error)
}) error {
	f, err := elf.NewFile(r)
	if err != nil {
		return fmt.Errorf("%s is not an ELF executable: %v", name, err)
	}
	if f.Machine != elf.EM_AARCH64 || f.Class != elf.ELFCLASS64 {
		return fmt.Errorf("%s is built for %v, the nodes need arm64 (%v)", name, f.Machine, elf.EM_AARCH64)
	}
	return nil
}

// k3sImages returns the airgap images archive to bake and its name in
// the image: the user's --k3s-images, or the pinned download.
func k3sImages(ctx context.Context, s *spec.Spec, cache *fetch.Cache, opts Options) (file, name string, err error) {
	switch {
	case s.K3sImages != "":
		name = filepath.Base(s.K3sImages)
		if err := checkK3sImagesName(name); err != nil {
			return "", "", usage("--k3s-images", fmt.Errorf("%s: %w", s.K3sImages, err))
		}
		return s.K3sImages, name, nil
	case s.TestK3s != "":
		// A stand-in is not k3s and imports no images: 175 MB for nothing.
		return "", "", nil
	}
	rel := k3sImagesRelease()
	if s.K3sBinary != "" {
		// k3s imports what it finds and pulls what it lacks: images of
		// another release cost a download, they break nothing.
		progress(opts.Progress, "WARNING: --k3s-binary without --k3s-images: baking the airgap images of k3s %s; give --k3s-images FILE if your k3s is another release", rel.Version)
	}
	if opts.K3sImages != nil {
		rel = *opts.K3sImages
	}
	u, err := url.Parse(rel.URL)
	if err != nil {
		return "", "", fmt.Errorf("k3s images URL %q: %w", rel.URL, err)
	}
	name = path.Base(u.Path)
	if err := checkK3sImagesName(name); err != nil {
		return "", "", fmt.Errorf("k3s images URL %s: %w", rel.URL, err)
	}
	file, err = getInput(ctx, cache, fetch.Input{
		Name: "k3s " + rel.Version + " arm64 airgap images", URL: rel.URL, SHA256: rel.SHA256, Flag: "--k3s-images FILE",
	}, "--k3s-images")
	return file, name, err
}

func checkK3sImagesName(name string) error {
	if !slices.ContainsFunc(k3sImageExts(), func(ext string) bool { return strings.HasSuffix(name, ext) }) {
		return fmt.Errorf("k3s imports images archives by extension, want one of %s (e.g. k3s-airgap-images-arm64.tar.zst)",
			strings.Join(k3sImageExts(), " "))
	}
	return nil
}

// debs returns keepalived and its dependencies: the user's --debs, or
// Debian's, verified through the signed archive chain.
func debs(ctx context.Context, s *spec.Spec, cache *fetch.Cache, opts Options, installed map[string]bool) ([]debFile, error) {
	if s.Debs != "" {
		local, err := debarchive.LocalDebs(s.Debs)
		if err != nil {
			return nil, usage("--debs", err)
		}
		if !slices.ContainsFunc(local, func(d debarchive.LocalDeb) bool { return d.Name == "keepalived" }) {
			return nil, usage("--debs", fmt.Errorf("%s has no keepalived package: the nodes need it for the VIP (apt-get download keepalived:arm64 and its dependencies)", s.Debs))
		}
		var out []debFile
		for _, d := range local {
			out = append(out, debFile{path: d.Path, name: filepath.Base(d.Path)})
		}
		for _, p := range nodePackages(s) {
			if !slices.ContainsFunc(local, func(d debarchive.LocalDeb) bool { return d.Name == p }) && !installed[p] {
				progress(opts.Progress, "WARNING: --debs %s has no %s package and the base image lacks it: %s", s.Debs, p, packageReasons[p])
			}
		}
		return out, nil
	}
	// With --offline the archive answers from the cache (signed Release,
	// Packages, .debs of an earlier run) or says what is missing.
	keyring := opts.DebianKeyring
	if keyring == nil {
		var err error
		if keyring, err = debarchive.BookwormKeyring(); err != nil {
			return nil, err
		}
	}
	mirror := opts.DebianMirror
	if mirror == "" {
		mirror = "http://deb.debian.org/debian"
	}
	a := &debarchive.Archive{BaseURL: mirror, Suite: "bookworm", Component: "main", Arch: "arm64",
		Keyring: keyring, Cache: cache, Logger: opts.Logger, Installed: installed}
	pkgs, err := a.Resolve(ctx, nodePackages(s))
	if err != nil {
		return nil, debErr(err)
	}
	paths, err := a.Download(ctx, pkgs)
	if err != nil {
		return nil, debErr(err)
	}
	out := make([]debFile, len(pkgs))
	for i, p := range pkgs {
		out[i] = debFile{path: paths[i], name: p.DebName()}
	}
	return out, nil
}

// packageReasons say why the nodes install each package.
var packageReasons = map[string]string{
	"keepalived":          "the VIP",
	"nftables":            "the firewall (overlays/rootfs/etc/nftables.conf)",
	"unattended-upgrades": "security updates",
	"sudo":                "the admin's root access (root has no password)",
	"open-iscsi":          "Longhorn attaches every volume over iSCSI: without iscsid no volume attaches",
	"nfs-common":          "Longhorn's nfs:// backup target",
}

// nodePackages are the Debian packages the nodes install at first boot
// (the base's own are not downloaded again).
func nodePackages(s *spec.Spec) []string {
	pkgs := []string{"keepalived", "nftables", "unattended-upgrades", "sudo"}
	if s.ServiceOn("longhorn") {
		pkgs = append(pkgs, "open-iscsi")
		if strings.HasPrefix(s.LonghornBackupTarget, "nfs://") {
			pkgs = append(pkgs, "nfs-common")
		}
	}
	return pkgs
}

func debErr(err error) error {
	if errors.Is(err, fetch.ErrNotCached) {
		return usage("--debs", err) // the cache names the fix: --debs DIR, or a run online
	}
	if errors.Is(err, fetch.ErrDigestMismatch) {
		return usage("--debs", fmt.Errorf("%w: pass --debs DIR to use local .debs", err))
	}
	return fmt.Errorf("keepalived .debs from Debian: %w", err)
}
