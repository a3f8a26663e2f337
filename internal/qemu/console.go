package qemu

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"regexp"
	"time"
)

const consolePoll = 100 * time.Millisecond

// WaitConsole waits until re matches the serial console output and returns
// the time since QEMU started. Like expect, a match consumes the output up
// to its end: calling it twice with "login:" waits for a second prompt.
// After Reset only output from after the reset counts.
func (v *VM) WaitConsole(ctx context.Context, re *regexp.Regexp) (time.Duration, error) {
	for {
		v.mu.Lock()
		from := v.mark
		v.mu.Unlock()
		out, err := readFrom(v.p.serial, from)
		if err != nil {
			return 0, fmt.Errorf("qemu: VM %s: console: %w", v.cfg.Name, err)
		}
		if loc := re.FindIndex(out); loc != nil {
			elapsed := time.Since(v.StartedAt)
			v.mu.Lock()
			v.mark = max(v.mark, from+int64(loc[1]))
			v.mu.Unlock()
			return elapsed, nil
		}
		select {
		case <-v.done:
			// Read once more: QEMU may have written the match as it exited.
			if out, _ := readFrom(v.p.serial, from); re.Match(out) {
				continue
			}
			return 0, fmt.Errorf("qemu: VM %s: waiting for %q on the console: %w; console ends: %s", v.cfg.Name, re, v.exitError(), tail(out))
		case <-ctx.Done():
			return 0, fmt.Errorf("qemu: VM %s: %q not on the console after %s: %w; console ends: %s",
				v.cfg.Name, re, time.Since(v.StartedAt).Round(time.Second), ctx.Err(), tail(out))
		case <-time.After(consolePoll):
		}
	}
}

// Console returns everything the guest printed so far.
func (v *VM) Console() ([]byte, error) { return os.ReadFile(v.p.serial) }

func readFrom(path string, off int64) ([]byte, error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil // QEMU has not created it yet
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return nil, err
	}
	return io.ReadAll(f)
}

// tail is the last lines of console output, for error messages.
func tail(b []byte) string {
	const lines = 15
	b = bytes.TrimRight(b, "\r\n")
	i := len(b)
	for n := 0; n < lines && i > 0; n++ {
		i = bytes.LastIndexByte(b[:i], '\n')
		if i < 0 {
			i = 0
		}
	}
	s := string(bytes.ReplaceAll(b[i:], []byte("\r"), nil))
	if s == "" {
		return "(nothing)"
	}
	return "\n" + s
}
