package harden

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// lockedPassword is what root's shadow field becomes: "!" locks the
// account's password, "*" is no hash at all, so unlocking (usermod -U)
// cannot bring the base's default password back.
const lockedPassword = "!*"

// LockRoot replaces root's password with a locked, empty one under root
// (a directory or "/"), through usermod --root so shadow-utils does the
// locking and file handling. It reports whether it changed anything.
func LockRoot(ctx context.Context, root string) (bool, error) {
	cur, err := shadowPassword(root, "root")
	if err != nil {
		return false, err
	}
	if strings.HasPrefix(cur, "!") && !strings.ContainsAny(cur, "$") {
		return false, nil // already locked with no hash behind the "!"
	}
	if _, err := exec.LookPath("usermod"); err != nil {
		return false, fmt.Errorf("lock root: usermod not found (install the passwd package): %w", err)
	}
	args := []string{"--password", lockedPassword, "root"}
	if root != "/" {
		args = append([]string{"--root", root}, args...)
	}
	if out, err := exec.CommandContext(ctx, "usermod", args...).CombinedOutput(); err != nil {
		return false, fmt.Errorf("lock root: usermod %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return true, nil
}

// shadowPassword reads user's password field from root's /etc/shadow.
func shadowPassword(root, user string) (string, error) {
	p := filepath.Join(root, "/etc/shadow")
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 2 && f[0] == user {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("%s has no entry for %s", p, user)
}
