package stacksecrets

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/homecloud/homecloud/overlays/stack"
)

func TestLoadOrCreate(t *testing.T) {
	dir := t.TempDir()
	first, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, k := range stack.SecretKeys() {
		v := first[k]
		if len(v) != passwordLen || strings.Trim(v, alphabet) != "" || seen[v] {
			t.Errorf("%s: %q: want %d distinct characters of the alphabet", k, v, passwordLen)
		}
		seen[v] = true
	}
	fi, err := os.Stat(filepath.Join(dir, FileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("%s: %v, mode %v, want 0600", FileName, err, fi.Mode())
	}

	// A file from an older builder lacks a key: only that one is made.
	delete(first, "restic-password")
	b, _ := json.Marshal(first)
	if err := os.WriteFile(filepath.Join(dir, FileName), b, 0o600); err != nil {
		t.Fatal(err)
	}
	second, err := LoadOrCreate(dir)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range first {
		if second[k] != v {
			t.Errorf("%s changed on reload", k)
		}
	}
	if second["restic-password"] == "" {
		t.Error("missing key not generated")
	}
}

func TestLoadOrCreateErrors(t *testing.T) {
	if _, err := LoadOrCreate(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "cluster's secrets first") {
		t.Errorf("missing dir: %v", err)
	}
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, FileName), []byte("{"), 0o600)
	if _, err := LoadOrCreate(dir); err == nil || !strings.Contains(err.Error(), FileName) {
		t.Errorf("corrupt file: %v", err)
	}
}
