package qemu

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"time"
)

// qmp runs one command on QEMU's QMP socket and returns its "return" value.
// It connects per command: QEMU serves one QMP client at a time, and a
// short-lived connection cannot be left stuck by an earlier caller.
func qmp(ctx context.Context, sock, cmd string, args any) (json.RawMessage, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("qmp %s: %w", cmd, err)
	}
	defer conn.Close()
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()

	r := bufio.NewReader(conn)
	enc := json.NewEncoder(conn)
	var greeting struct {
		QMP json.RawMessage `json:"QMP"`
	}
	if err := readMsg(r, &greeting); err != nil || greeting.QMP == nil {
		return nil, fmt.Errorf("qmp %s: no greeting from %s: %v", cmd, sock, err)
	}
	for _, c := range []struct {
		name string
		args any
	}{{"qmp_capabilities", nil}, {cmd, args}} {
		req := map[string]any{"execute": c.name}
		if c.args != nil {
			req["arguments"] = c.args
		}
		if err := enc.Encode(req); err != nil {
			return nil, fmt.Errorf("qmp %s: send: %w", c.name, err)
		}
		ret, err := readReturn(r)
		if err != nil {
			return nil, fmt.Errorf("qmp %s: %w", c.name, err)
		}
		if c.name == cmd {
			return ret, nil
		}
	}
	panic("unreachable")
}

// readReturn skips asynchronous events up to the command's reply.
func readReturn(r *bufio.Reader) (json.RawMessage, error) {
	for {
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
		}
		if err := readMsg(r, &m); err != nil {
			return nil, err
		}
		switch {
		case m.Error != nil:
			return nil, fmt.Errorf("%s: %s", m.Error.Class, m.Error.Desc)
		case m.Return != nil:
			return m.Return, nil
		}
	}
}

func readMsg(r *bufio.Reader, v any) error {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := json.Unmarshal(line, v); err != nil {
		return fmt.Errorf("decode %q: %w", line, err)
	}
	return nil
}

// hostFwdRE matches a forward in "info usernet", e.g.
// "TCP[HOST_FORWARD]  11       127.0.0.1 34361       10.0.2.15    22".
var hostFwdRE = regexp.MustCompile(`TCP\[HOST_FORWARD\]\s+\d+\s+\S+\s+(\d+)\s+\S+\s+(\d+)`)

// parseUsernet maps guest ports to the host ports QEMU bound for them; it
// is how a forward asked for with host port 0 learns its port without the
// race of picking a free port before QEMU binds it.
func parseUsernet(out string) map[int]int {
	m := map[int]int{}
	for _, s := range hostFwdRE.FindAllStringSubmatch(out, -1) {
		h, _ := strconv.Atoi(s[1])
		g, _ := strconv.Atoi(s[2])
		m[g] = h
	}
	return m
}
