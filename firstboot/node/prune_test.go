package node

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestPruneManifests(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"homecloud-00-plan.yaml", "homecloud-03-nextcloud.yaml", "homecloud-09-portainer.yaml", "ccm.yaml", "homecloud-notes.txt"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	keep := map[string][]byte{"homecloud-00-plan.yaml": nil, "homecloud-03-nextcloud.yaml": nil}
	removed, err := pruneManifests(dir, keep)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(removed, []string{"homecloud-09-portainer.yaml"}) {
		t.Errorf("removed %v, want the switched-off portainer only", removed)
	}
	ents, _ := os.ReadDir(dir)
	var left []string
	for _, e := range ents {
		left = append(left, e.Name())
	}
	if want := []string{"ccm.yaml", "homecloud-00-plan.yaml", "homecloud-03-nextcloud.yaml", "homecloud-notes.txt"}; !slices.Equal(left, want) {
		t.Errorf("left %v, want %v (k3s' own files and non-manifests stay)", left, want)
	}
}
