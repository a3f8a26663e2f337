package stack

// The backup CronJob's commands live here, not in its template, so a test
// can run the very same lines against a real restic and a real restore.
// They read their paths from the environment: DB_DIR and NAS_DIR are what
// is backed up, BACKUP_HOST the name snapshots are filed under; restic
// itself reads RESTIC_REPOSITORY and RESTIC_PASSWORD.

// Retention of snapshots: a week of dailies, a month of weeklies, half a
// year of monthlies.
const (
	KeepDaily   = "7"
	KeepWeekly  = "4"
	KeepMonthly = "6"
)

// BackupScript is the shell the restic container runs.
func BackupScript() []string {
	return []string{
		"set -eu",
		`restic cat config >/dev/null 2>&1 || restic init`,
		`restic backup --host "$BACKUP_HOST" --tag db "$DB_DIR"`,
		`restic backup --host "$BACKUP_HOST" --tag nas --exclude-caches --one-file-system "$NAS_DIR"`,
		`restic forget --host "$BACKUP_HOST" --keep-daily ` + KeepDaily + ` --keep-weekly ` + KeepWeekly + ` --keep-monthly ` + KeepMonthly + ` --prune`,
	}
}

// FilesBackupScript backs up Nextcloud's own volume (its users' files,
// config.php, apps) from FILES_DIR. It runs from Nextcloud's namespace,
// as a pod can mount only a claim of its own, before BackupScript, whose
// forget prunes for both.
func FilesBackupScript() []string {
	return []string{
		"set -eu",
		`restic cat config >/dev/null 2>&1 || restic init`,
		`restic backup --host "$BACKUP_HOST" --tag files --exclude-caches "$FILES_DIR"`,
	}
}

// RestoreScript restores the latest snapshot of one tag (db, nas or
// files) into RESTORE_DIR; files land under their original absolute paths
// there, so RESTORE_DIR=/ puts them back where they were backed up from.
func RestoreScript() []string {
	return []string{
		"set -eu",
		`restic restore latest --host "$BACKUP_HOST" --tag "$TAG" --target "$RESTORE_DIR"`,
	}
}

// DumpScript is the database dump the CronJob's first container makes
// into DB_DIR before restic runs; pg_restore reads it back (README).
func DumpScript() []string {
	return []string{
		"set -eu",
		`pg_dump --host "$PGHOST" --username "$PGUSER" --dbname "$PGDATABASE" --format custom --file "$DB_DIR/nextcloud.dump.tmp"`,
		`mv "$DB_DIR/nextcloud.dump.tmp" "$DB_DIR/nextcloud.dump"`,
	}
}
