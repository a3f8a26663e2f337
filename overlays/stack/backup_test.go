package stack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The CronJob's exact commands, run against Debian's restic: back up a
// dump folder and a NAS folder to a local repository (twice, so init is
// skipped the second time and forget runs on real snapshots), then
// restore each tag and compare.
func TestBackupAndRestoreWithRestic(t *testing.T) {
	if _, err := exec.LookPath("restic"); err != nil {
		t.Skip("restic not installed (apt-get install restic)")
	}
	tmp := t.TempDir()
	db := filepath.Join(tmp, "backup", "db")
	nas := filepath.Join(tmp, "backup", "nas")
	files := map[string]string{
		filepath.Join(db, "nextcloud.dump"):           "PGDMP dump",
		filepath.Join(nas, "books", "a.epub"):         "book",
		filepath.Join(nas, "photos", "2026", "x.jpg"): strings.Repeat("jpeg", 1000),
	}
	for p, data := range files {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	env := append(os.Environ(),
		"RESTIC_REPOSITORY="+filepath.Join(tmp, "repo"), "RESTIC_PASSWORD=generated-per-cluster",
		"RESTIC_CACHE_DIR="+filepath.Join(tmp, "cache"), "BACKUP_HOST=home", "DB_DIR="+db, "NAS_DIR="+nas)
	run := func(script []string, extra ...string) string {
		t.Helper()
		cmd := exec.Command("sh", "-c", strings.Join(script, "\n"))
		cmd.Env = append(env, extra...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return string(out)
	}
	run(BackupScript())
	run(BackupScript())
	for _, tag := range []string{"db", "nas"} {
		target := filepath.Join(tmp, "restore-"+tag)
		run(RestoreScript(), "TAG="+tag, "RESTORE_DIR="+target)
		for p, want := range files {
			dir := db
			if tag == "nas" {
				dir = nas
			}
			if !strings.HasPrefix(p, dir) {
				continue
			}
			got, err := os.ReadFile(filepath.Join(target, p))
			if err != nil || string(got) != want {
				t.Errorf("restored %s (tag %s): %q, %v; want %q", p, tag, got, err, want)
			}
		}
	}
	out := run([]string{`restic snapshots --host "$BACKUP_HOST" --compact`})
	if strings.Count(out, "home") < 2 {
		t.Errorf("snapshots after forget:\n%s", out)
	}
}
