package stack

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The CronJobs' exact commands, run against Debian's restic: back up
// Nextcloud's volume, a dump folder and a NAS folder to a local
// repository (twice, so init is skipped the second time and forget runs
// on real snapshots), then restore each tag and compare.
func TestBackupAndRestoreWithRestic(t *testing.T) {
	if _, err := exec.LookPath("restic"); err != nil {
		t.Skip("restic not installed (apt-get install restic)")
	}
	tmp := t.TempDir()
	db := filepath.Join(tmp, "backup", "db")
	nas := filepath.Join(tmp, "backup", "nas")
	ncFiles := filepath.Join(tmp, "backup", "files")
	files := map[string]string{
		filepath.Join(db, "nextcloud.dump"):                         "PGDMP dump",
		filepath.Join(nas, "books", "a.epub"):                       "book",
		filepath.Join(nas, "photos", "2026", "x.jpg"):               strings.Repeat("jpeg", 1000),
		filepath.Join(ncFiles, "config", "config.php"):              "<?php $CONFIG = [];",
		filepath.Join(ncFiles, "data", "anna", "files", "cake.jpg"): strings.Repeat("cake", 500),
	}
	dirOf := map[string]string{"db": db, "nas": nas, "files": ncFiles}
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
		"RESTIC_CACHE_DIR="+filepath.Join(tmp, "cache"), "BACKUP_HOST=home", "DB_DIR="+db, "NAS_DIR="+nas, "FILES_DIR="+ncFiles)
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
	// Two nights: Nextcloud's volume first, then the dump and the NAS.
	for range 2 {
		run(FilesBackupScript())
		run(BackupScript())
	}
	for tag, dir := range dirOf {
		target := filepath.Join(tmp, "restore-"+tag)
		run(RestoreScript(), "TAG="+tag, "RESTORE_DIR="+target)
		for p, want := range files {
			if !strings.HasPrefix(p, dir+"/") {
				continue
			}
			got, err := os.ReadFile(filepath.Join(target, p))
			if err != nil || string(got) != want {
				t.Errorf("restored %s (tag %s): %q, %v; want %q", p, tag, got, err, want)
			}
		}
	}
	// forget keeps one daily per path set: db, nas and files.
	out := run([]string{`restic snapshots --host "$BACKUP_HOST" --compact`})
	if strings.Count(out, "home") != 3 {
		t.Errorf("snapshots after forget, want one per tag:\n%s", out)
	}
}
