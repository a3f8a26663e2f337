package cluster

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLoadNode(t *testing.T) {
	valid := `{"cluster":"home","cluster_id":"ab12","name":"home-node1","index":1,"expect":3,
	  "board":"pine64","network":{"mode":"static","address":"10.9.0.11/24"}}`
	tests := []struct {
		name, body, wantErr string
	}{
		{"valid", valid, ""},
		{"not json", "{", "parse node config"},
		{"bad mode", strings.Replace(valid, `"static"`, `"magic"`, 1), "network.mode"},
		{"index above expect", strings.Replace(valid, `"expect":3`, `"expect":0`, 1), "expect"},
		{"no id", strings.Replace(valid, `"ab12"`, `""`, 1), "cluster_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "node.json")
			os.WriteFile(p, []byte(tt.body), 0o600)
			n, err := LoadNode(p)
			if tt.wantErr == "" {
				if err != nil || n.Name != "home-node1" {
					t.Fatalf("LoadNode = %+v, %v", n, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want %q", err, tt.wantErr)
			}
		})
	}
	if _, err := LoadNode(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing node.json accepted")
	}
}

func TestWriteFileAtomicMode(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := WriteFileAtomic(p, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", st.Mode().Perm())
	}
	left, _ := filepath.Glob(filepath.Join(filepath.Dir(p), ".*tmp*"))
	if len(left) != 0 {
		t.Fatalf("temp files left: %v", left)
	}
}
