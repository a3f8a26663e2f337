// Package harden does, on a node's first boot, the hardening the builder
// cannot bake as files: lock the base image's root account (Armbian ships
// root/1234), set login.defs' policy keys in the base's own file, drop the
// SSH host keys every copy of the base shares, and keep the firewall's peer
// and LAN sets current (see Firewall).
//
// The static controls (sshd policy, sysctl, module blacklist, nftables
// ruleset, journald, unattended upgrades) are files in overlays/rootfs.
// Every path sits under a root directory, so tests run on a copy.
package harden

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
)

// Options are what Apply works on.
type Options struct {
	// Root is the root file system; "" or "/" is the running system.
	Root   string
	Logger *slog.Logger
}

func (o Options) root() string {
	if o.Root == "" {
		return "/"
	}
	return o.Root
}

func (o Options) log() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// Apply runs every first-boot control; each is idempotent, so a node that
// lost power midway runs it again. It needs usermod (package passwd).
func Apply(ctx context.Context, o Options) error {
	locked, err := LockRoot(ctx, o.root())
	if err != nil {
		return err
	}
	if locked {
		o.log().Info("root password locked", "why", "the base image's default password must not work")
	}
	changed, err := LoginDefs(o.root())
	if err != nil {
		return err
	}
	if changed {
		o.log().Info("login.defs policy set", "keys", len(LoginDefsPolicy()))
	}
	removed, err := RemoveSharedHostKeys(o.root())
	if err != nil {
		return err
	}
	if len(removed) > 0 {
		o.log().Info("removed the base image's shared SSH host keys", "files", removed)
	}
	return nil
}

// SharedHostKeys are the host keys a base image carries besides the
// node's own ed25519 key (which the builder writes per node): sshd never
// offers them (the policy lists one HostKey), and their private halves are
// the same in every copy of a public image.
func SharedHostKeys() []string {
	var out []string
	for _, t := range []string{"rsa", "ecdsa", "dsa"} {
		k := "/etc/ssh/ssh_host_" + t + "_key"
		out = append(out, k, k+".pub")
	}
	return out
}

// RemoveSharedHostKeys deletes SharedHostKeys under root and returns the
// ones it removed.
func RemoveSharedHostKeys(root string) ([]string, error) {
	var removed []string
	for _, k := range SharedHostKeys() {
		err := os.Remove(filepath.Join(root, k))
		switch {
		case err == nil:
			removed = append(removed, k)
		case errors.Is(err, fs.ErrNotExist):
		default:
			return removed, fmt.Errorf("remove shared host key: %w", err)
		}
	}
	return removed, nil
}
