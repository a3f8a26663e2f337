package debarchive

import (
	"bufio"
	"bytes"
	"strings"
)

// ParseStatus reads dpkg's status file (/var/lib/dpkg/status of a base
// image) and returns the names of the installed packages and of the
// virtual packages they provide.
func ParseStatus(status []byte) map[string]bool {
	out := map[string]bool{}
	var name, state string
	var provides []string
	flush := func() {
		if name != "" && strings.HasSuffix(state, " installed") {
			out[name] = true
			for _, p := range provides {
				out[p] = true
			}
		}
		name, state, provides = "", "", nil
	}
	sc := bufio.NewScanner(bytes.NewReader(status))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			flush()
		case strings.HasPrefix(line, "Package:"):
			name = strings.TrimSpace(strings.TrimPrefix(line, "Package:"))
		case strings.HasPrefix(line, "Status:"):
			state = strings.TrimSpace(strings.TrimPrefix(line, "Status:"))
		case strings.HasPrefix(line, "Provides:"):
			for _, p := range strings.Split(strings.TrimPrefix(line, "Provides:"), ",") {
				// "libfoo (= 1.2)": the name is what satisfies a dependency.
				if f := strings.Fields(p); len(f) > 0 {
					provides = append(provides, strings.SplitN(f[0], ":", 2)[0])
				}
			}
		}
	}
	flush()
	return out
}
