package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/mail"
	"os"
	"regexp"
	"slices"
	"strings"

	"github.com/homecloud/homecloud/boards"
)

// MaxNodes bounds --nodes: a home cloud, not a data centre, and a typo
// like 40 for 4 should not start writing forty images.
const MaxNodes = 32

// BoardLookup finds a board definition by name; boards.Load is one.
type BoardLookup func(name string) (*boards.Board, error)

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	userName = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)
	fsLabel  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,16}$`)
)

// reservedUsers are names a Debian base image already uses for system accounts.
func reservedUsers() []string {
	return []string{"root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail",
		"news", "uucp", "proxy", "www-data", "backup", "list", "irc", "gnats", "nobody", "_apt",
		"messagebus", "sshd", "systemd-network", "systemd-resolve", "systemd-timesync", "polkitd"}
}

// Validate checks the whole spec before anything is written. Every problem
// is a *UsageError naming its flag and the fix; all of them are returned
// together (errors.Join) so one run shows everything to correct.
func (s *Spec) Validate(lookup BoardLookup) error {
	var errs []error
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	board, err := s.validateBoard(lookup)
	add(err)
	if s.Nodes < 1 {
		add(usagef("--nodes", "%d: need at least 1 node", s.Nodes))
	} else if s.Nodes > MaxNodes {
		add(usagef("--nodes", "%d: at most %d nodes", s.Nodes, MaxNodes))
	}
	add(s.validateName())
	errs = append(errs, s.validateNetwork()...)
	add(s.validateDomain())
	errs = append(errs, s.validateSSHKeys()...)
	add(s.validateBaseImage(board))
	add(s.validateOut())
	add(optionalFile("--k3s-binary", s.K3sBinary))
	add(optionalFile("--k3s-images", s.K3sImages))
	add(optionalFile("--test-k3s", s.TestK3s))
	if s.TestK3s != "" && s.K3sBinary != "" {
		add(usagef("--test-k3s", "cannot be combined with --k3s-binary: pick one"))
	}
	add(optionalDir("--debs", s.Debs, "the .debs"))
	add(optionalDir("--uboot-dir", s.UBootDir, "the u-boot files"))
	switch {
	case !userName.MatchString(s.AdminUser):
		add(usagef("--admin-user", "%q: want a Linux user name: lower-case letters, digits, _ and -, starting with a letter, at most 32", s.AdminUser))
	case slices.Contains(reservedUsers(), s.AdminUser):
		add(usagef("--admin-user", "%q: a system account of the base image: pick another name", s.AdminUser))
	}
	if s.DataDisk != "" && !fsLabel.MatchString(s.DataDisk) {
		add(usagef("--data-disk", "%q: want a file system label of at most 16 letters, digits, '.', '_' or '-'", s.DataDisk))
	}
	if s.DataDiskNode < 0 || (s.Nodes >= 1 && s.DataDiskNode > s.Nodes) {
		add(usagef("--data-disk-node", "%d: want a node number from 1 to %d (--nodes), or 0 to let the cluster pick", s.DataDiskNode, s.Nodes))
	}
	errs = append(errs, s.validateStack()...)
	known := KnownServices()
	for name := range s.Services {
		if !slices.Contains(known, name) {
			add(usagef("--services", "unknown service %q: known services are %s", name, strings.Join(known, ", ")))
		}
	}
	return errors.Join(errs...)
}

func (s *Spec) validateBoard(lookup BoardLookup) (*boards.Board, error) {
	b, err := lookup(s.Board)
	if err == nil {
		return b, nil
	}
	if s.Board == "" {
		return nil, usagef("--board", "missing: %v", err)
	}
	return nil, &UsageError{Field: "--board", Err: err}
}

func (s *Spec) validateName() error {
	if !dnsLabel.MatchString(s.Name) {
		return usagef("--name", "%q: want a DNS label: lower-case letters, digits and '-', not at either end, e.g. %s", s.Name, DefaultName)
	}
	if s.Nodes >= 1 {
		if longest := s.NodeName(s.Nodes); len(longest) > 63 {
			return usagef("--name", "%q: node name %s is longer than a DNS label's 63 characters: use a shorter name", s.Name, longest)
		}
	}
	return nil
}

func (s *Spec) validateDomain() error {
	if s.Domain == "" {
		if s.ACMEEmail != "" {
			return usagef("--acme-email", "%s: needs --domain: Let's Encrypt certifies a domain name", s.ACMEEmail)
		}
		return nil
	}
	if err := checkDomain(s.Domain); err != nil {
		return &UsageError{Field: "--domain", Err: fmt.Errorf("%q: %w", s.Domain, err)}
	}
	if s.ACMEEmail == "" {
		return nil
	}
	a, err := mail.ParseAddress(s.ACMEEmail)
	if err != nil || a.Name != "" || a.Address != s.ACMEEmail {
		return usagef("--acme-email", "%q: want a bare e-mail address such as admin@%s", s.ACMEEmail, s.Domain)
	}
	if _, host, _ := strings.Cut(a.Address, "@"); checkDomain(host) != nil {
		return usagef("--acme-email", "%q: the part after @ is not a domain name", s.ACMEEmail)
	}
	return nil
}

func checkDomain(d string) error {
	if strings.HasSuffix(d, ".") {
		return errors.New("drop the trailing dot")
	}
	if len(d) > 253 {
		return errors.New("longer than 253 characters")
	}
	labels := strings.Split(strings.ToLower(d), ".")
	if len(labels) < 2 {
		return errors.New("want a fully qualified name such as cloud.example.org")
	}
	for _, l := range labels {
		if !dnsLabel.MatchString(l) {
			return fmt.Errorf("label %q: want letters, digits and '-', not at either end", l)
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("ends in a number: that is an address, not a domain (addresses go in --vip)")
	}
	return nil
}

func (s *Spec) validateBaseImage(b *boards.Board) error {
	if s.BaseImage == "" {
		if b == nil {
			return nil // the board error says it all
		}
		if _, _, err := b.BaseImageURL(); err != nil {
			return &UsageError{Field: "--base-image", Err: err}
		}
		return nil
	}
	if !strings.HasSuffix(s.BaseImage, ".img") && !strings.HasSuffix(s.BaseImage, ".img.xz") {
		return usagef("--base-image", "%s: want a raw disk image, .img or .img.xz", s.BaseImage)
	}
	f, err := os.Open(s.BaseImage)
	if err != nil {
		return fileErr("--base-image", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return usagef("--base-image", "%v", err)
	}
	if !fi.Mode().IsRegular() {
		return usagef("--base-image", "%s: not a regular file", s.BaseImage)
	}
	if strings.HasSuffix(s.BaseImage, ".xz") {
		xzMagic := []byte{0xfd, '7', 'z', 'X', 'Z', 0x00}
		head := make([]byte, len(xzMagic))
		if _, err := f.Read(head); err != nil || !bytes.Equal(head, xzMagic) {
			return usagef("--base-image", "%s: not xz-compressed: rename it to .img if it is a raw image", s.BaseImage)
		}
		return nil
	}
	if b != nil && fi.Size() <= b.Disk.RootPartitionStart {
		return usagef("--base-image", "%s: %d bytes is too small for a %s disk (the root partition starts at %d)",
			s.BaseImage, fi.Size(), b.Name, b.Disk.RootPartitionStart)
	}
	return nil
}

func (s *Spec) validateOut() error {
	if s.Out == "" {
		return usagef("--out", "empty: give the directory for the images, e.g. %s", DefaultOut)
	}
	fi, err := os.Stat(s.Out)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil
	case err != nil:
		return usagef("--out", "%v", err)
	case !fi.IsDir():
		return usagef("--out", "%s: exists and is not a directory", s.Out)
	}
	return nil
}

func optionalDir(field, path, what string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileErr(field, err)
	}
	if !fi.IsDir() {
		return usagef(field, "%s: not a directory: give the directory holding %s", path, what)
	}
	return nil
}

// fileErr says what to do about an input file that cannot be opened.
func fileErr(field string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return usagef(field, "%v: check the path (a relative one starts from the current directory)", err)
	case errors.Is(err, fs.ErrPermission):
		return usagef(field, "%v: the builder cannot read it: run it as a user who can, or fix the file's permissions", err)
	}
	return usagef(field, "%v", err)
}

func optionalFile(field, path string) error {
	if path == "" {
		return nil
	}
	fi, err := os.Stat(path)
	if err != nil {
		return fileErr(field, err)
	}
	if !fi.Mode().IsRegular() {
		return usagef(field, "%s: not a regular file", path)
	}
	return nil
}

var (
	sizeRE     = regexp.MustCompile(`^[1-9][0-9]{0,5}(Mi|Gi|Ti)$`)
	restRepoRE = regexp.MustCompile(`^rest:https?://[^\s/]+(/\S*)?$`)
	longhornRE = regexp.MustCompile(`^nfs://[^\s/:]+:/\S*$`)
)

// validateStack checks the service stack's settings.
func (s *Spec) validateStack() []error {
	var errs []error
	for _, f := range []struct{ flag, v string }{{"--nextcloud-size", s.NextcloudSize}, {"--database-size", s.DatabaseSize}, {"--monitoring-size", s.MonitoringSize}} {
		if !sizeRE.MatchString(f.v) {
			errs = append(errs, usagef(f.flag, "%q: want a size such as 8Gi (a whole number of Mi, Gi or Ti)", f.v))
		}
	}
	switch r := s.BackupRepo; {
	case r == "":
	case strings.HasPrefix(r, "/"):
		if strings.ContainsAny(r, " \t\n\"'$`\\") || strings.Contains(r, "..") {
			errs = append(errs, usagef("--backup-repo", "%q: want a plain absolute path without spaces, quotes or ..", r))
		}
	case strings.HasPrefix(r, "rest:"):
		if !restRepoRE.MatchString(r) {
			errs = append(errs, usagef("--backup-repo", "%q: want rest:https://HOST:PORT/PATH", r))
		}
	default:
		errs = append(errs, usagef("--backup-repo", "%q: want an absolute path on the data-disk node or rest:https://HOST:PORT/PATH (a restic REST server)", r))
	}
	if t := s.LonghornBackupTarget; t != "" && !longhornRE.MatchString(t) {
		errs = append(errs, usagef("--longhorn-backup-target", "%q: want nfs://HOST:/PATH (a CIFS target needs credentials the spec does not carry: set it in Longhorn's UI)", t))
	}
	return errs
}
