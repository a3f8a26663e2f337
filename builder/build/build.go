// Package build is the image pipeline: it validates a cluster spec and
// every input before writing anything, makes (or reuses) the cluster's
// secrets, and writes one ready disk image per node into --out.
//
// Images are streamed, never loaded into memory: the base is copied
// sparsely, the root file system is written in place by debugfs, and the
// SHA-256 of each image is computed while another one is being written.
package build

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/homecloud/homecloud/boards"
	"github.com/homecloud/homecloud/builder/fetch"
	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/builder/stacksecrets"
)

// SumsFile lists the images' SHA-256 in sha256sum -c format.
const SumsFile = "SHA256SUMS"

// Options are the parts of a build that do not come from the spec.
type Options struct {
	// Firstboot returns the linux/arm64 homecloud-firstboot binary
	// (payload.Firstboot in the command). It is called once, after the
	// spec validated, so a usage error is reported first.
	Firstboot func() ([]byte, error)
	// CacheDir is the download cache; "" means the user's cache dir.
	CacheDir string
	// Progress receives one line per step; nil means quiet.
	Progress io.Writer
	Logger   *slog.Logger
	// HTTPClient downloads the inputs; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Now is the clock for certificates; nil means time.Now.
	Now func() time.Time
	// K3s replaces the pinned k3s download, K3sImages the pinned airgap
	// images and DebianMirror Debian's archive URL (tests point them at
	// a local server).
	K3s          *Download
	K3sImages    *Download
	DebianMirror string
	// DebianKeyring is the archive keys the mirror's Release must be
	// signed by; nil means Debian bookworm's own (tests sign their own).
	DebianKeyring openpgp.EntityList
}

// Result describes what a build wrote.
type Result struct {
	Out        string
	SecretsDir string
	ClusterID  string
	Images     []Image
}

// Image is one node's disk image.
type Image struct {
	Node  string
	Index int
	Path  string
	// SHA256 is the hex digest of the whole image file.
	SHA256 string
	// Address is the static address with prefix, or "dhcp".
	Address string
	MAC     string
	// SSHHostKey is the node's host key fingerprint ("SHA256:..."), to
	// check on the first ssh login.
	SSHHostKey string
}

// Run builds every node image of s. A problem with the spec or an input
// is a *spec.UsageError, and then nothing was written to s.Out.
func Run(ctx context.Context, s *spec.Spec, opts Options) (*Result, error) {
	if err := s.Validate(boards.Load); err != nil {
		return nil, err
	}
	board, err := boards.Load(s.Board)
	if err != nil {
		return nil, &spec.UsageError{Field: "--board", Err: err}
	}
	cache, err := fetch.NewCache(opts.CacheDir)
	if err != nil {
		return nil, err
	}
	cache.Offline, cache.Client, cache.Progress, cache.Logger = s.Offline, opts.HTTPClient, opts.Progress, opts.Logger
	in, err := prepare(ctx, s, board, opts, cache)
	if err != nil {
		return nil, err
	}
	if name, ok, err := secrets.ExistingCluster(s.Out); errors.Is(err, secrets.ErrNotClusterDir) {
		return nil, &spec.UsageError{Field: "--out", Err: err}
	} else if err != nil {
		return nil, err
	} else if ok && name != s.Name {
		return nil, &spec.UsageError{Field: "--name", Err: fmt.Errorf("%s holds the cluster %q, not %q: give --name %s to add nodes to it, or another --out for a new cluster",
			s.Out, name, s.Name, name)}
	}

	warnMemory(s, board, opts.Progress)
	for _, w := range in.rootfs.warnings {
		progress(opts.Progress, "WARNING: %s", w)
	}

	// From here on --out is written, by this build alone.
	unlock, err := lockOut(s.Out)
	if err != nil {
		return nil, err
	}
	defer unlock()
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	sec, err := secrets.LoadOrCreate(s.Out, s.Name, plannedNodes(s), now())
	if err != nil {
		return nil, err
	}
	// The stack's passwords are made once here: every image must carry
	// the same ones (images are written concurrently).
	stackFile, err := stacksecrets.ImageFile(s)
	if err != nil {
		return nil, err
	}
	res := &Result{Out: s.Out, SecretsDir: sec.Dir(), ClusterID: sec.ClusterID()}
	images, err := writeImages(ctx, in, s, sec, stackFile, opts.Progress)
	if err != nil {
		return nil, err
	}
	res.Images = images
	if err := placeImages(s.Out, images); err != nil {
		return nil, err
	}
	warnStale(s, opts.Progress)
	return res, nil
}

// warnMemory says when the service stack, as the plan places it, asks a
// board for more memory than it has: the build goes on (the figures are
// estimates, and the user may want the images anyway), but the cluster
// would refuse or evict pods.
func warnMemory(s *spec.Spec, board *boards.Board, w io.Writer) {
	if board.MemoryMiB == 0 {
		return
	}
	probs, err := stacksecrets.Overcommitted(s, board.MemoryMiB)
	if err != nil {
		progress(w, "WARNING: no memory estimate: %v", err)
		return
	}
	for _, p := range probs {
		progress(w, "WARNING: memory: %s", p)
	}
	if len(probs) > 0 {
		progress(w, "WARNING: by the estimates in README.md's memory budget, the cluster will refuse or evict pods: switch services off (--services monitoring=off,...) or use more boards (4 hold the whole stack)")
	}
}

// warnStale names the images an earlier build with more nodes left in
// --out: they are not in SHA256SUMS and expect a bigger cluster. They are
// the user's files to delete, not ours.
func warnStale(s *spec.Spec, w io.Writer) {
	for i := s.Nodes + 1; ; i++ {
		p := filepath.Join(s.Out, s.NodeName(i)+".img")
		if _, err := os.Stat(p); err != nil {
			return
		}
		progress(w, "WARNING: %s is from an earlier build of %d or more nodes and not in %s: delete it, or build with --nodes %d again", p, i, SumsFile, i)
	}
}

// placeImages renames the finished images into place, all or none
// started: an interrupted rebuild must not leave new images beside an
// old SHA256SUMS that calls them corrupt. The old list goes first, the
// new one is written last, when every image it names is in place.
func placeImages(out string, images []Image) error {
	if err := os.Remove(filepath.Join(out, SumsFile)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for i, img := range images {
		if err := renameSync(tmpImage(out, img.Node), img.Path); err != nil {
			for _, rest := range images[i:] {
				os.Remove(tmpImage(out, rest.Node))
			}
			return fmt.Errorf("node %s: %w", img.Node, err)
		}
	}
	return writeSums(out, images)
}

// tmpImage is where a node's image is written until every image is done.
func tmpImage(out, node string) string { return filepath.Join(out, "."+node+".img.tmp") }

// lockOut makes sure no other build writes into out at the same time
// (two would write the same temp images and secrets): an flock on the
// directory itself, so nothing is left behind, and the kernel drops it
// when the process dies.
func lockOut(out string) (unlock func(), err error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, &spec.UsageError{Field: "--out", Err: fmt.Errorf("make output directory: %w: give a --out you can write to", err)}
	}
	d, err := os.Open(out)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(d.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &spec.UsageError{Field: "--out", Err: fmt.Errorf("%s: another homecloud-builder is writing into it: wait for it to finish, or give another --out", out)}
		}
		return nil, fmt.Errorf("lock %s: %w", out, err)
	}
	return func() { d.Close() }, nil
}

// writesInFlight is how many images are written at once: two, so that
// one image's copy (CPU in the kernel) overlaps the other's wait for the
// disk (debugfs fsyncs the image it wrote into, which waits for the
// whole copy to reach the disk). More would only split the same disk.
const writesInFlight = 2

// writeImages writes every node's image, writesInFlight at a time; each
// one is then fsynced and hashed (SHA-256 is CPU: ~1.3 s per 2 GiB)
// while the next ones are written, and renamed into place.
func writeImages(ctx context.Context, in *inputs, s *spec.Spec, sec *secrets.Secrets, stackFile secrets.File, w io.Writer) (_ []Image, err error) {
	images := make([]Image, s.Nodes)
	defer func() {
		if err != nil { // no image is placed unless all are done
			for i := range s.Nodes {
				os.Remove(tmpImage(s.Out, s.NodeName(i+1)))
			}
		}
	}()
	var mu sync.Mutex // serialises progress lines
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		progress(w, format, args...)
	}
	g, ctx := errgroup.WithContext(ctx)
	writing := make(chan struct{}, writesInFlight)
	for i := 1; i <= s.Nodes; i++ {
		name := s.NodeName(i)
		b, err := sec.Bundle(name)
		if err != nil {
			g.Wait()
			return nil, err
		}
		img := &images[i-1]
		*img = Image{Node: name, Index: i, Path: filepath.Join(s.Out, name+".img"), Address: "dhcp",
			MAC: b.MAC.String(), SSHHostKey: b.SSHHostKeyFingerprint}
		if b.Addr.IsValid() {
			img.Address = fmt.Sprintf("%s/%d", b.Addr, s.Prefix().Bits())
		}
		// Taken here, not in the goroutine, so images start in node order.
		select {
		case writing <- struct{}{}:
		case <-ctx.Done():
			err := g.Wait() // the failed image's error
			if err == nil {
				err = ctx.Err()
			}
			return nil, err
		}
		say("%s: writing image %d of %d", name, i, s.Nodes)
		g.Go(func() error {
			tmp := tmpImage(s.Out, name)
			start := time.Now()
			err := writeNode(ctx, in, s, b, stackFile, tmp)
			writeDur := time.Since(start)
			<-writing
			if err == nil {
				img.SHA256, err = finishImage(ctx, tmp)
				if err != nil {
					err = fmt.Errorf("node %s: %w", name, err)
				}
			}
			if err != nil {
				return err
			}
			say("%s: %s (written in %.1fs, sha256 %s…)", name, img.Path, writeDur.Seconds(), img.SHA256[:16])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return images, nil
}

// finishImage fsyncs and hashes the image at tmp. The fsync is
// disk-bound and the hash CPU-bound: together they take as long as the
// slower one.
func finishImage(ctx context.Context, tmp string) (string, error) {
	synced := make(chan error, 1)
	go func() { synced <- syncFile(tmp) }()
	sum, err := hashImage(ctx, tmp)
	if serr := <-synced; err == nil {
		err = serr
	}
	return sum, err
}

func (o Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

func progress(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}

// renameSync renames and fsyncs the directory so the name survives a
// power cut.
func renameSync(from, to string) error {
	if err := os.Rename(from, to); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(to))
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("fsync %s: %w", filepath.Dir(to), err)
	}
	return nil
}
