package qemu

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
)

// LAN is a virtual Ethernet segment shared by VMs: a hub in this process
// that floods every frame a VM sends to all other VMs on it. Each VM's NIC
// is a QEMU `-netdev dgram` on a unix datagram socket in the LAN's
// directory, and the hub owns one socket there too.
//
// Why this and not QEMU's other ways (DESIGN.md §6 found all of them carry
// multicast):
//   - `-netdev socket,mcast=…,localaddr=127.0.0.1` needs no hub, but it is a
//     host multicast group: two tests that pick the same group and port
//     silently share a LAN, and any host process can join it.
//   - `-netdev stream` and plain `dgram` are point to point: a server takes
//     one client, so three VMs cannot share one segment without a hub.
//
// Sockets in a private directory cannot collide with anything and need no
// host network configuration, the hub passes any frame (mDNS, VRRP, ARP,
// unicast) unchanged, a VM killed and started again rejoins by name, and
// frames to a VM that is not reading are dropped, never block the others.
type LAN struct {
	dir  string
	conn *net.UnixConn

	mu     sync.Mutex
	ports  map[string]*port // by VM name
	byPath map[string]*port // by socket path
	closed bool
	seq    int // numbers port sockets, so VM names need not fit a path
	dhcp   *dhcpServer

	wg sync.WaitGroup
}

// port is one VM's plug. Frames to it leave through a socket of its own:
// a datagram waiting in a VM's queue counts against its sender's buffer,
// so with one shared sender a VM that stops reading would, after a hundred
// frames, starve every other VM.
type port struct {
	name, path string
	fd         int // unbound, non-blocking AF_UNIX datagram socket
	frames     int // received from this VM
}

// maxFrame covers QEMU's largest packet (virtio-net with offloads).
const maxFrame = 69632

// NewLAN starts a hub whose sockets live in dir (created if missing),
// which must be private to this LAN; keep it short: unix socket paths are
// limited to 107 bytes.
func NewLAN(dir string) (*LAN, error) {
	dir, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("qemu: LAN: %w", err)
	}
	// Room for port sockets too.
	if err := checkSocketPath(filepath.Join(dir, "port-99999.sock")); err != nil {
		return nil, fmt.Errorf("qemu: LAN in %s: %w", dir, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("qemu: LAN: %w", err)
	}
	hub := filepath.Join(dir, "hub.sock")
	os.Remove(hub)
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: hub, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("qemu: LAN hub socket: %w", err)
	}
	l := &LAN{dir: dir, conn: conn, ports: map[string]*port{}, byPath: map[string]*port{}}
	l.wg.Add(1)
	go l.run()
	return l, nil
}

// Close stops the hub and removes its socket. VMs still on it stay up but
// see no more traffic.
func (l *LAN) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for name := range l.ports {
		l.detachLocked(name)
	}
	l.mu.Unlock()
	err := l.conn.Close()
	l.wg.Wait()
	os.Remove(l.hubPath())
	return err
}

// Frames is how many frames the hub has received from the VM called name
// since it was attached.
func (l *LAN) Frames(name string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if p, ok := l.ports[name]; ok {
		return p.frames
	}
	return 0
}

func (l *LAN) hubPath() string { return filepath.Join(l.dir, "hub.sock") }

// attach plugs the VM called name in and returns the path its QEMU binds.
func (l *LAN) attach(name string) (string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return "", errors.New("LAN is closed")
	}
	if _, ok := l.ports[name]; ok {
		return "", fmt.Errorf("a VM called %s is already on the LAN in %s", name, l.dir)
	}
	l.seq++
	path := filepath.Join(l.dir, fmt.Sprintf("port-%d.sock", l.seq))
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_DGRAM|syscall.SOCK_CLOEXEC|syscall.SOCK_NONBLOCK, 0)
	if err != nil {
		return "", fmt.Errorf("LAN port %s: socket: %w", name, err)
	}
	p := &port{name: name, path: path, fd: fd}
	l.ports[name], l.byPath[path] = p, p
	return path, nil
}

func (l *LAN) detach(name string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.detachLocked(name)
}

func (l *LAN) detachLocked(name string) {
	if p, ok := l.ports[name]; ok {
		syscall.Close(p.fd)
		delete(l.byPath, p.path)
		delete(l.ports, name)
		os.Remove(p.path)
	}
}

func (l *LAN) run() {
	defer l.wg.Done()
	buf := make([]byte, maxFrame)
	for {
		n, from, err := l.conn.ReadFromUnix(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || from == nil {
			continue // a datagram error concerns one sender, not the hub
		}
		l.flood(from.Name, buf[:n])
	}
}

// flood sends a frame to every VM but its sender. Frames from sockets that
// are not a VM port are dropped. A VM whose queue is full (or that has not
// bound its socket yet) loses the frame, as on a real switch, instead of
// stalling the LAN.
func (l *LAN) flood(src string, frame []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	from, ok := l.byPath[src]
	if !ok {
		return
	}
	from.frames++
	if l.dhcp != nil {
		l.dhcp.answer(from, frame)
	}
	for _, p := range l.ports {
		if p != from {
			syscall.Sendto(p.fd, frame, syscall.MSG_DONTWAIT, &syscall.SockaddrUnix{Name: p.path})
		}
	}
}
