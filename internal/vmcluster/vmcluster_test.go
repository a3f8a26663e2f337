package vmcluster

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestNodeImages(t *testing.T) {
	dir := t.TempDir()
	if _, err := Images(dir); err == nil || !strings.Contains(err.Error(), "homecloud-builder --board qemu-virt") {
		t.Fatalf("empty dir: err = %v, want a hint to run the builder", err)
	}
	for _, f := range []string{"homecloud-node2.img", "homecloud-node1.img", ".homecloud-node3.img.tmp", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Images(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(dir, "homecloud-node1.img"), filepath.Join(dir, "homecloud-node2.img")}
	if !slices.Equal(got, want) {
		t.Errorf("Images = %v, want %v", got, want)
	}
}

func TestVMName(t *testing.T) {
	for img, want := range map[string]string{
		"/out/homecloud-node1.img":  "homecloud-node1",
		"/out/My Cluster_Node2.img": "my-cluster-node2",
	} {
		if got := Name(img); got != want {
			t.Errorf("Name(%s) = %s, want %s", img, got, want)
		}
	}
}
