package fetch

import (
	"fmt"
	"io"
	"time"
)

// progressEvery keeps the line readable and the terminal cheap.
const progressEvery = 250 * time.Millisecond

// progress prints "name: 12.0 MiB / 40.0 MiB (30%)" on one line, rewritten
// with \r, and a newline when done.
type progress struct {
	w           io.Writer
	name        string
	done, total int64
	last        time.Time
}

func newProgress(w io.Writer, name string, done, total int64) *progress {
	return &progress{w: w, name: name, done: done, total: total}
}

func (p *progress) Write(b []byte) (int, error) {
	p.done += int64(len(b))
	if p.w != nil && time.Since(p.last) >= progressEvery {
		p.print()
	}
	return len(b), nil
}

func (p *progress) finish() {
	if p.w == nil {
		return
	}
	p.print()
	fmt.Fprintln(p.w)
}

func (p *progress) print() {
	p.last = time.Now()
	if p.total > 0 {
		fmt.Fprintf(p.w, "\r%s: %s / %s (%d%%)", p.name, mib(p.done), mib(p.total), p.done*100/p.total)
		return
	}
	fmt.Fprintf(p.w, "\r%s: %s", p.name, mib(p.done))
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
