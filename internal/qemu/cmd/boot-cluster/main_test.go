package main

import (
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		args        []string
		wantForward []int
		wantErr     string
	}{
		{args: nil, wantForward: []int{22}},
		{args: []string{"-forward", "22, 6443,"}, wantForward: []int{22, 6443}},
		{args: []string{"-forward", ""}, wantForward: nil},
		{args: []string{"-forward", "22,ssh"}, wantErr: `"ssh" is not a TCP port`},
		{args: []string{"-forward", "70000"}, wantErr: `"70000" is not a TCP port`},
		{args: []string{"-login", "("}, wantErr: "-login"},
		{args: []string{"out/"}, wantErr: "-images DIR"},
		{args: []string{"-dhcp", "10.1.2.3"}, wantErr: "-dhcp"},
		{args: []string{"-dhcp", "fd00::1/64"}, wantErr: "-dhcp"},
		{args: []string{"-dhcp", "10.1.2.3/30"}, wantErr: "-dhcp"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			o, err := parse(tt.args, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if o.dhcp.String() != "10.77.0.1/24" || o.pool.String() != "10.77.0.100" {
				t.Errorf("DHCP %s from %s, want the default 10.77.0.1/24 from 10.77.0.100", o.dhcp, o.pool)
			}
			if !slices.Equal(o.forward, tt.wantForward) {
				t.Errorf("forward = %v, want %v", o.forward, tt.wantForward)
			}
		})
	}
}

func TestParseDHCP(t *testing.T) {
	o, err := parse([]string{"-dhcp", "192.168.50.1/24"}, io.Discard)
	if err != nil || o.dhcp.String() != "192.168.50.1/24" || o.pool.String() != "192.168.50.100" {
		t.Fatalf("-dhcp 192.168.50.1/24: %+v, %v", o, err)
	}
	if o, err = parse([]string{"-dhcp", "off"}, io.Discard); err != nil || o.dhcp.IsValid() {
		t.Fatalf("-dhcp off: dhcp %v, err %v", o.dhcp, err)
	}
}

func TestNodeImages(t *testing.T) {
	dir := t.TempDir()
	if _, err := nodeImages(dir); err == nil || !strings.Contains(err.Error(), "homecloud-builder --board qemu-virt") {
		t.Fatalf("empty dir: err = %v, want a hint to run the builder", err)
	}
	for _, f := range []string{"homecloud-node2.img", "homecloud-node1.img", ".homecloud-node3.img.tmp", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := nodeImages(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "homecloud-node1.img"), filepath.Join(dir, "homecloud-node2.img")}
	if !slices.Equal(got, want) {
		t.Errorf("nodeImages = %v, want %v", got, want)
	}
}

func TestVMName(t *testing.T) {
	for img, want := range map[string]string{
		"/out/homecloud-node1.img":  "homecloud-node1",
		"/out/My Cluster_Node2.img": "my-cluster-node2",
	} {
		if got := vmName(img); got != want {
			t.Errorf("vmName(%s) = %s, want %s", img, got, want)
		}
	}
}
