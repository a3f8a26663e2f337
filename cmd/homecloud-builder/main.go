// Command homecloud-builder writes one ready disk image per node of a
// home cloud.
//
//	homecloud-builder [build] --board pine64 --nodes 4 --ssh-key ~/.ssh/id_ed25519.pub ...
//	homecloud-builder boards
//
// Exit status: 0 done, 1 failed, 2 a mistake in the command line or an
// input (the message names the flag and the fix; nothing was written).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/homecloud/homecloud/boards"
	"github.com/homecloud/homecloud/builder/build"
	"github.com/homecloud/homecloud/builder/payload"
	"github.com/homecloud/homecloud/builder/spec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "build"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "build":
		return buildImages(ctx, args, stdout, stderr)
	case "boards":
		return listBoards(stdout, stderr)
	case "manifests":
		return writeManifests(args, stdout, stderr)
	case "help":
		usage(stderr)
		return 0
	}
	fmt.Fprintf(stderr, "homecloud-builder: unknown command %q: want build (the default), boards or manifests\n", cmd)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `usage: homecloud-builder [build] --board NAME --nodes N --ssh-key FILE [flags]
       homecloud-builder boards        list the supported boards
       homecloud-builder manifests [build's flags]   write the service stack into --out/manifests/
Run homecloud-builder build -h for every flag.
`)
}

func buildImages(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	s, err := spec.Parse(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(stderr, "\nCommands: build (the default) writes the images; boards lists the boards; manifests writes the service stack.")
		return 0
	}
	if err != nil {
		return fail(stderr, err)
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	res, err := build.Run(ctx, s, build.Options{
		Firstboot: payload.Firstboot,
		Progress:  stderr,
		Logger:    logger,
	})
	if err != nil {
		return fail(stderr, err)
	}
	printSummary(stdout, res)
	return 0
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintln(stderr, "homecloud-builder:", err)
	var ue *spec.UsageError
	if errors.As(err, &ue) {
		return 2
	}
	return 1
}

func printSummary(w io.Writer, res *build.Result) {
	fmt.Fprintf(w, "\n%d node images in %s (cluster id %s):\n", len(res.Images), res.Out, res.ClusterID)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  NODE\tADDRESS\tMAC\tSSH HOST KEY\tIMAGE")
	for _, img := range res.Images {
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%s\n", img.Node, img.Address, img.MAC, img.SSHHostKey, img.Path)
	}
	tw.Flush()
	if slices.ContainsFunc(res.Images, func(img build.Image) bool { return img.Address == "" }) {
		// k3s knows its etcd members by address: a server back at another
		// one cannot rejoin (k3s-io/k3s#11778).
		fmt.Fprintln(w, "\nDHCP: reserve each node's address in your router by its MAC above; a k3s server that comes back")
		fmt.Fprintln(w, "at another address cannot rejoin the cluster's etcd.")
	}
	fmt.Fprintf(w, "\nChecksums: %s/%s (check with: cd %s && sha256sum -c %s)\n", res.Out, build.SumsFile, res.Out, build.SumsFile)
	fmt.Fprintf(w, "Secrets: %s/ holds the cluster CA key and the nodes' keys: back it up, share it with no one,\n", res.SecretsDir)
	fmt.Fprintln(w, "and build with the same --out to add nodes to this cluster later.")
	fmt.Fprintln(w, "Next: flash each image to its board's SD card and power the boards on.")
}

func listBoards(stdout, stderr io.Writer) int {
	all, err := boards.All()
	if err != nil {
		fmt.Fprintln(stderr, "homecloud-builder:", err)
		return 1
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	for _, b := range all {
		fmt.Fprintf(tw, "%s\t%s\n", b.Name, b.Description)
	}
	tw.Flush()
	return 0
}
