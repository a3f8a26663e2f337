package harden

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/homecloud/homecloud/internal/cluster"
)

// LoginDefsPath is where shadow-utils reads its policy. Debian has no
// login.defs.d, and the file belongs to the base's login package, so the
// node edits its keys in place instead of replacing the file.
const LoginDefsPath = "/etc/login.defs"

// Setting is one login.defs key and its value.
type Setting struct{ Key, Value string }

// LoginDefsPolicy is DevSec os_hardening's login.defs policy, for accounts
// made after first boot (the admin logs in with keys only; aging applies
// to any local password someone sets later).
func LoginDefsPolicy() []Setting {
	return []Setting{
		{"UMASK", "027"},        // new files are not world-readable
		{"HOME_MODE", "0750"},   // nor new home directories
		{"PASS_MAX_DAYS", "60"}, // passwords expire
		{"PASS_MIN_DAYS", "7"},  // and cannot be cycled back at once
		{"PASS_WARN_AGE", "7"},
		{"LOGIN_RETRIES", "5"},
		{"LOGIN_TIMEOUT", "60"},
		{"ENCRYPT_METHOD", "YESCRYPT"}, // Debian 12's strongest
		// Rounds for a tool that still asks for SHA-512 (chpasswd -c
		// SHA512); lynis' AUTH-9230 looks for these.
		{"SHA_CRYPT_MIN_ROUNDS", "5000"},
		{"SHA_CRYPT_MAX_ROUNDS", "100000"},
		{"FAILLOG_ENAB", "yes"},
		{"LOG_OK_LOGINS", "yes"},
		{"SYSLOG_SU_ENAB", "yes"},
		{"SYSLOG_SG_ENAB", "yes"},
	}
}

// LoginDefs sets LoginDefsPolicy in root's login.defs, keeping every other
// line, and reports whether the file changed. A missing file is written
// with the policy alone.
func LoginDefs(root string) (bool, error) {
	p := filepath.Join(root, LoginDefsPath)
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("read %s: %w", p, err)
	}
	out := SetKeys(old, LoginDefsPolicy())
	if bytes.Equal(out, old) {
		return false, nil
	}
	if err := cluster.ReplaceFile(p, out, 0o644); err != nil {
		return false, err
	}
	return true, nil
}

// SetKeys sets each key in a "KEY value" file (login.defs' format): the
// first active line of a key gets the value (keeping its spacing style),
// later active duplicates are commented out so they cannot override it,
// and missing keys are appended. Comments and other keys stay. Applying
// it twice changes nothing.
func SetKeys(data []byte, settings []Setting) []byte {
	want := map[string]string{}
	for _, s := range settings {
		want[s.Key] = s.Value
	}
	seen := map[string]bool{}
	var b bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line := sc.Text()
		key, sep := activeKey(line)
		v, ours := want[key]
		switch {
		case !ours:
			b.WriteString(line)
		case seen[key]:
			b.WriteString("# " + line + " (homecloud: overridden above)")
		default:
			seen[key] = true
			b.WriteString(key + sep + v)
		}
		b.WriteByte('\n')
	}
	var missing []Setting
	for _, s := range settings {
		if !seen[s.Key] {
			missing = append(missing, s)
			seen[s.Key] = true
		}
	}
	if len(missing) > 0 {
		b.WriteString("\n# homecloud hardening (DevSec os_hardening):\n")
		for _, s := range missing {
			b.WriteString(s.Key + "\t" + s.Value + "\n")
		}
	}
	return b.Bytes()
}

// activeKey returns the key of an uncommented "KEY value" line and the
// whitespace after it.
func activeKey(line string) (key, sep string) {
	t := strings.TrimLeft(line, " \t")
	if t == "" || t[0] == '#' {
		return "", ""
	}
	end := strings.IndexAny(t, " \t")
	if end < 0 {
		return t, "\t"
	}
	rest := t[end:]
	return t[:end], rest[:len(rest)-len(strings.TrimLeft(rest, " \t"))]
}
