package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/builder/build"
)

func TestCommands(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout []string
		stderr []string
		not    []string // in neither stream
	}{
		{[]string{"boards"}, 0, []string{"pine64 ", "PINE A64-LTS", "qemu-virt "}, nil, nil},
		{[]string{"-h"}, 0, nil, []string{"-board", "-nodes", "-ssh-key", "boards lists the boards", "manifests writes"}, nil},
		{[]string{"build", "-h"}, 0, nil, []string{"-base-image"}, nil},
		{[]string{"frobnicate"}, 2, nil, []string{`unknown command "frobnicate"`}, nil},
		{[]string{"--board", "pine64", "--nodes", "0"}, 2, nil, []string{"--nodes: 0: need at least 1 node", "--ssh-key"}, nil},
		{[]string{"--bogus"}, 2, nil, []string{"flag provided but not defined: -bogus", "-help lists the flags"}, []string{"Usage of", "-acme-email"}},
		// One line for one mistake: no second copy, no list of every flag.
		{[]string{"--nodes", "99999999999999999999"}, 2, nil, []string{"value out of range"}, []string{"Usage of", "-acme-email"}},
		// A node count below 1 is the mistake, not the data-disk node too.
		{[]string{"--board", "qemu-virt", "--nodes", "-1"}, 2, nil, []string{"--nodes: -1: need at least 1 node"}, []string{"--data-disk-node"}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstderr:\n%s", code, tt.code, stderr.String())
			}
			for _, w := range tt.stdout {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout lacks %q:\n%s", w, stdout.String())
				}
			}
			for _, w := range tt.stderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr.String())
				}
			}
			if strings.Count(stderr.String(), "value out of range") > 1 {
				t.Errorf("the mistake is reported twice:\n%s", stderr.String())
			}
			for _, w := range tt.not {
				if strings.Contains(stdout.String()+stderr.String(), w) {
					t.Errorf("output has %q:\n%s%s", w, stdout.String(), stderr.String())
				}
			}
		})
	}
}

// A DHCP node must keep its address (k3s' etcd knows members by address):
// the summary says to reserve it by the MAC it prints, and only then.
func TestSummaryAsksForReservationsOnDHCP(t *testing.T) {
	for _, tt := range []struct {
		addr string
		want bool
	}{{"", true}, {"192.168.1.11/24", false}} {
		var out bytes.Buffer
		printSummary(&out, &build.Result{Out: "out", SecretsDir: "out/cluster", Images: []build.Image{
			{Node: "homecloud-node1", Address: tt.addr, MAC: "02:4c:11:22:33:44", Path: "out/homecloud-node1.img"},
		}})
		got := strings.Contains(out.String(), "reserve each node's address")
		if got != tt.want || !strings.Contains(out.String(), "02:4c:11:22:33:44") {
			t.Errorf("address %q: asks for a reservation %v, want %v:\n%s", tt.addr, got, tt.want, out.String())
		}
	}
}
