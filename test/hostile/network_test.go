//go:build linux

package hostile

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kb-labs/sandbox"
)

// hostListener accepts on the host and counts what reached it.
type hostListener struct {
	l        net.Listener
	accepted atomic.Int32
}

func listenHost(t *testing.T, network, addr string) *hostListener {
	t.Helper()
	l, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	h := &hostListener{l: l}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			h.accepted.Add(1)
			c.Close()
		}
	}()
	return h
}

func (h *hostListener) noAccept() error {
	time.Sleep(50 * time.Millisecond)
	if n := h.accepted.Load(); n > 0 {
		return fmt.Errorf("HOST EFFECT: the host listener %s accepted %d connections from the run", h.l.Addr(), n)
	}
	return nil
}

// hostIP is a non-loopback IPv4 address of the host, or "" when none.
func hostIP() string {
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && !n.IP.IsLoopback() {
			return n.IP.String()
		}
	}
	return ""
}

func tcpEgress(c *cctx, network sandbox.Network, loWant string) error {
	l := listenHost(c.t, "tcp4", "0.0.0.0:0")
	port := fmt.Sprint(l.l.Addr().(*net.TCPAddr).Port)
	c.cfg.Permissions.Network = network
	targets := []string{"127.0.0.1:" + port}
	if ip := hostIP(); ip != "" {
		targets = append(targets, ip+":"+port)
	}
	o := c.run(append([]string{"probe", "connect"}, targets...)...)
	errs := []error{ok(o), kvIn(o, "connect0", loWant)}
	if len(targets) > 1 {
		errs = append(errs, kvIn(o, "connect1", "ENETUNREACH", "EHOSTUNREACH"))
	}
	return all(append(errs, l.noAccept())...)
}

func networkCases() []hcase {
	return []hcase{
		{name: "tcp_host_port_network_none", fn: func(c *cctx) error {
			return tcpEgress(c, sandbox.NetworkNone, "ENETUNREACH")
		}},
		{name: "tcp_host_port_network_loopback", fn: func(c *cctx) error {
			return tcpEgress(c, sandbox.NetworkLoopback, "ECONNREFUSED")
		}},
		{name: "loopback_is_private", fn: func(c *cctx) error {
			// The run's own loopback works, and it is not the host's.
			c.cfg.Permissions.Network = sandbox.NetworkLoopback
			l := listenHost(c.t, "tcp4", "127.0.0.1:0")
			port := l.l.Addr().(*net.TCPAddr).Port
			o := c.run("sh", "-c", fmt.Sprintf("/hostile/probe listen; echo seen=$(grep -ci ':%04X ' /proc/net/tcp)", port))
			return all(ok(o), kvIn(o, "self_connect", "ok"), kvIn(o, "seen", "0"), l.noAccept())
		}},
		{name: "udp_host_port", fn: func(c *cctx) error {
			pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
			if err != nil {
				return err
			}
			defer pc.Close()
			port := pc.LocalAddr().(*net.UDPAddr).Port
			c.cfg.Permissions.Network = sandbox.NetworkLoopback
			targets := []string{fmt.Sprintf("127.0.0.1:%d", port)}
			if ip := hostIP(); ip != "" {
				targets = append(targets, fmt.Sprintf("%s:%d", ip, port))
			}
			o := c.run(append([]string{"probe", "udp"}, targets...)...)
			pc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			buf := make([]byte, 64)
			errs := []error{ok(o)}
			if n, _, err := pc.ReadFrom(buf); err == nil {
				errs = append(errs, fmt.Errorf("HOST EFFECT: host UDP port received %q", buf[:n]))
			}
			if len(targets) > 1 {
				errs = append(errs, kvIn(o, "udp1", "ENETUNREACH", "EHOSTUNREACH"))
			}
			return all(errs...)
		}},
		{name: "abstract_unix_socket", fn: func(c *cctx) error {
			name := "@hostile-" + c.mark
			l := listenHost(c.t, "unix", name)
			c.cfg.Permissions.Network = sandbox.NetworkLoopback
			o := c.run("probe", "connect", name)
			return all(ok(o), kvIn(o, "connect0", "ECONNREFUSED", "EPERM"), l.noAccept())
		}},
		{name: "host_unix_socket_path", fn: func(c *cctx) error {
			dir, err := os.MkdirTemp("/tmp", "hostile-sock-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(dir)
			os.Chmod(dir, 0o777)
			sock := filepath.Join(dir, "s")
			l := listenHost(c.t, "unix", sock)
			os.Chmod(sock, 0o777)
			wd := c.workdir()
			os.Symlink(sock, filepath.Join(wd, "sock"))
			o := c.run("probe", "connect", "unix:"+sock, "unix:/workspace/sock", "unix:/proc/self/root"+sock)
			errs := []error{ok(o), l.noAccept()}
			for i := 0; i < 3; i++ {
				errs = append(errs, kvIn(o, fmt.Sprintf("connect%d", i), "ENOENT", "ECONNREFUSED", "EACCES"))
			}
			// Binding the socket's directory in is refused (a read-only
			// bind does not stop connect()).
			cfg := c.cfg
			cfg.Permissions.Filesystem.ReadOnly = append([]sandbox.Mount(nil), cfg.Permissions.Filesystem.ReadOnly...)
			cfg.Permissions.Filesystem.ReadOnly = append(cfg.Permissions.Filesystem.ReadOnly, sandbox.Mount{Source: dir, Target: "/sockdir"})
			if err := refused(cfg, c.mark); err != nil {
				errs = append(errs, fmt.Errorf("a mount holding a host unix socket: %w", err))
			}
			return all(append(errs, l.noAccept())...)
		}},
		{name: "no_resolver_config", fn: func(c *cctx) error {
			o := c.run("sh", "-c", `test -e /etc/resolv.conf; echo resolv=$?; echo links=$(grep : /proc/net/dev | cut -d: -f1 | tr -d ' ' | tr '\n' ,)`)
			// Only the run's own loopback: no host interface is visible.
			return all(ok(o), kvIn(o, "resolv", "1"), kvIn(o, "links", "lo,"))
		}},
	}
}

func TestNetworkEgress(t *testing.T) { runCases(t, networkCases()) }
