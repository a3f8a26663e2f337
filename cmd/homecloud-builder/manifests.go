package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/homecloud/homecloud/boards"
	"github.com/homecloud/homecloud/builder/secrets"
	"github.com/homecloud/homecloud/builder/spec"
	"github.com/homecloud/homecloud/builder/stacksecrets"
	"github.com/homecloud/homecloud/internal/cluster"
	"github.com/homecloud/homecloud/overlays/stack"
)

// ManifestsDir is where `manifests` writes the stack, under --out.
const ManifestsDir = "manifests"

// writeManifests renders the service stack exactly as the nodes will
// deploy it, from the same spec flags as build, into OUT/manifests/. It
// makes (or reuses) the cluster's secrets in OUT/cluster/ like build does,
// so a later build with the same --out deploys these very files.
func writeManifests(args []string, stdout, stderr io.Writer) int {
	s, err := spec.Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "\nmanifests writes the service stack into --out/manifests/ (takes the same flags as build).")
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	if err := manifestErrors(s.Validate(boards.Load)); err != nil {
		return fail(stderr, err)
	}
	files, err := renderStack(s)
	if err != nil {
		return fail(stderr, err)
	}
	dir := filepath.Join(s.Out, ManifestsDir)
	if err := writeStack(dir, files); err != nil {
		return fail(stderr, err)
	}
	fmt.Fprintf(stdout, "%d manifest files in %s (they hold the stack's passwords: 0600, keep them private):\n", len(files), dir)
	for _, f := range files {
		fmt.Fprintf(stdout, "  %s\n", f.Name)
	}
	return 0
}

// renderStack is the stack for s as the nodes' plan places it
// (stacksecrets.Topology), with the cluster's secrets.
func renderStack(s *spec.Spec) ([]stack.File, error) {
	var nodes []secrets.NodeSpec
	addrs := s.NodeAddrs()
	for i, name := range s.NodeNames() {
		n := secrets.NodeSpec{Name: name, Index: i + 1}
		if addrs != nil {
			n.Addr = addrs[i]
		}
		nodes = append(nodes, n)
	}
	if err := os.MkdirAll(s.Out, 0o755); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	if _, err := secrets.LoadOrCreate(s.Out, s.Name, nodes, time.Now()); err != nil {
		return nil, err
	}
	cfg, err := stacksecrets.Config(s)
	if err != nil {
		return nil, err
	}
	return stack.Render(stack.Input{Config: cfg, Topology: stacksecrets.Topology(s)})
}

// writeStack replaces dir's manifests with files: a service switched off
// since the last run leaves no stale file behind.
func writeStack(dir string, files []stack.File) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("manifests dir: %w", err)
	}
	keep := map[string]bool{}
	for _, f := range files {
		if err := cluster.WriteFileAtomic(filepath.Join(dir, f.Name), f.Data, 0o600); err != nil {
			return err
		}
		keep[f.Name] = true
	}
	old, err := filepath.Glob(filepath.Join(dir, "homecloud-*.yaml"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if !keep[filepath.Base(p)] && strings.HasPrefix(filepath.Base(p), "homecloud-") {
			if err := os.Remove(p); err != nil {
				return fmt.Errorf("remove stale %s: %w", p, err)
			}
		}
	}
	return nil
}

// manifestErrors drops what only matters for writing images: the stack
// does not need the base image.
func manifestErrors(err error) error {
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var keep []error
	for _, e := range j.Unwrap() {
		var ue *spec.UsageError
		if errors.As(e, &ue) && ue.Field == "--base-image" {
			continue
		}
		keep = append(keep, e)
	}
	return errors.Join(keep...)
}
