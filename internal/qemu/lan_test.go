package qemu

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// shortDir is a temp dir with a path short enough for unix sockets, which
// t.TempDir's (named after the test) may not be.
func shortDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "qlan")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// fakePort stands in for a VM's QEMU: it binds the socket path attach gave.
func fakePort(t *testing.T, l *LAN, name string) *net.UnixConn {
	t.Helper()
	p, err := l.attach(name)
	if err != nil {
		t.Fatal(err)
	}
	// Bound but not connected, like QEMU's: the hub sends from other sockets.
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: p, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func send(t *testing.T, l *LAN, c *net.UnixConn, frame []byte) {
	t.Helper()
	if _, err := c.WriteToUnix(frame, &net.UnixAddr{Name: l.hubPath(), Net: "unixgram"}); err != nil {
		t.Fatal(err)
	}
}

func recvFrame(c *net.UnixConn, wait time.Duration) ([]byte, error) {
	c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, maxFrame)
	n, err := c.Read(buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

func TestLANFloodsToOthers(t *testing.T) {
	l, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a, b, c := fakePort(t, l, "a"), fakePort(t, l, "b"), fakePort(t, l, "c")

	// An mDNS-like multicast frame: dst 01:00:5e:00:00:fb.
	frame := append([]byte{0x01, 0x00, 0x5e, 0x00, 0x00, 0xfb, 0x02, 0, 0, 0, 0, 0xa, 0x08, 0x00}, bytes.Repeat([]byte{0xab}, 1500)...)
	send(t, l, a, frame)
	for name, conn := range map[string]*net.UnixConn{"b": b, "c": c} {
		got, err := recvFrame(conn, 5*time.Second)
		if err != nil {
			t.Fatalf("%s got no frame: %v", name, err)
		}
		if !bytes.Equal(got, frame) {
			t.Errorf("%s got %d bytes, not the %d-byte frame a sent", name, len(got), len(frame))
		}
	}
	if got, err := recvFrame(a, 200*time.Millisecond); err == nil {
		t.Errorf("sender a got its own frame back (%d bytes)", len(got))
	}
	if n := l.Frames("a"); n != 1 {
		t.Errorf("Frames(a) = %d, want 1", n)
	}

	// A port that left gets nothing; the others still do.
	l.detach("c")
	send(t, l, b, frame[:64])
	if _, err := recvFrame(a, 5*time.Second); err != nil {
		t.Fatalf("a got nothing from b: %v", err)
	}
	if _, err := recvFrame(c, 200*time.Millisecond); err == nil {
		t.Error("detached port c still got a frame")
	}
}

func TestLANDropsStrangers(t *testing.T) {
	dir := shortDir(t)
	l, err := NewLAN(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a := fakePort(t, l, "a")
	stranger, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: filepath.Join(dir, "x.sock"), Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	send(t, l, stranger, []byte("not a port"))
	if got, err := recvFrame(a, 300*time.Millisecond); err == nil {
		t.Errorf("a got %q from a socket that is not on the LAN", got)
	}
}

// A VM that never reads must not stall the LAN for the others.
func TestLANSlowPortDoesNotBlock(t *testing.T) {
	l, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a, b := fakePort(t, l, "a"), fakePort(t, l, "b")
	fakePort(t, l, "stuck") // never read
	// Lock step, so b never falls behind: only the stuck port can fill up.
	const frames = 500 // far beyond a unix datagram queue (~10 by default)
	for i := range frames {
		send(t, l, a, make([]byte, 1000))
		if _, err := recvFrame(b, 5*time.Second); err != nil {
			t.Fatalf("b stopped getting frames after %d of %d: %v", i, frames, err)
		}
	}
}

func TestLANNames(t *testing.T) {
	l, err := NewLAN(shortDir(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.attach("n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := l.attach("n1"); err == nil || !strings.Contains(err.Error(), "already") {
		t.Errorf("second n1: err = %v, want 'already on the LAN'", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := l.attach("n2"); err == nil {
		t.Error("attach after Close succeeded")
	}
	if _, err := os.Stat(l.hubPath()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("hub socket left after Close: %v", err)
	}
}

func TestNewLANLongPath(t *testing.T) {
	_, err := NewLAN(filepath.Join(shortDir(t), strings.Repeat("d", 100)))
	if err == nil || !strings.Contains(err.Error(), "shorter directory") {
		t.Fatalf("err = %v, want one asking for a shorter directory", err)
	}
}
