// Package netlab builds a private network of "hosts" for tests: one
// network namespace per host, each with a veth pair whose other end is on a
// bridge in a namespace of its own. Nothing touches the host's interfaces:
// every address lives in the lab's namespaces, which are removed at the
// test's end (and, if a test process died before, by the next lab).
package netlab

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns` keeps its named namespaces.
const netnsDir = "/run/netns"

// Lab is a private /24 with a bridge; hosts join it with AddHost.
type Lab struct {
	t      testing.TB
	prefix string // of every namespace's name: "mbxlab<pid>-"
	subnet string // "10.231.0." : hosts get .2, .3, …
	bridge string // the bridge's namespace
	next   int
}

// Host is one namespace of the lab.
type Host struct {
	Name string
	// Addr is its IPv4 address on the lab's bridge.
	Addr string
	ns   string
}

// New makes the lab's bridge namespace and bridge. It needs root and
// iproute2; without them it skips, or fails under MICROBOX_REQUIRE_VM=1.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		missing(t, "network namespaces need root")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		missing(t, "no ip (apt-get install iproute2)")
	}
	if _, err := exec.LookPath("nsenter"); err != nil {
		missing(t, "no nsenter (apt-get install util-linux)")
	}
	removeStale(t)
	l := &Lab{t: t, prefix: "mbxlab" + strconv.Itoa(os.Getpid()) + "-", subnet: "10.231.0.", next: 2}
	l.bridge = l.prefix + "br"
	t.Cleanup(l.remove)
	l.ip("netns", "add", l.bridge)
	l.ip("-n", l.bridge, "link", "add", "br0", "type", "bridge")
	l.ip("-n", l.bridge, "link", "set", "br0", "up")
	return l
}

func missing(t testing.TB, reason string) {
	t.Helper()
	if os.Getenv("MICROBOX_REQUIRE_VM") == "1" {
		t.Fatalf("MICROBOX_REQUIRE_VM=1 and %s", reason)
	}
	t.Skip(reason)
}

// AddHost makes a namespace named name with lo up and one interface, eth0,
// on the bridge.
func (l *Lab) AddHost(name string) *Host {
	l.t.Helper()
	h := &Host{Name: name, Addr: l.subnet + strconv.Itoa(l.next), ns: l.prefix + name}
	veth := "v" + strconv.Itoa(l.next)
	l.next++
	l.ip("netns", "add", h.ns)
	l.ip("-n", l.bridge, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
	l.ip("-n", l.bridge, "link", "set", veth, "master", "br0", "up")
	l.ip("-n", h.ns, "addr", "add", h.Addr+"/24", "dev", "eth0")
	l.ip("-n", h.ns, "link", "set", "eth0", "up")
	l.ip("-n", h.ns, "link", "set", "lo", "up")
	return h
}

func (l *Lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// remove deletes the lab's namespaces; the veths and the bridge go with
// them. Processes still inside keep their namespace alive until they end.
func (l *Lab) remove() {
	names, _ := filepath.Glob(filepath.Join(netnsDir, l.prefix+"*"))
	for _, n := range names {
		if out, err := exec.Command("ip", "netns", "del", filepath.Base(n)).CombinedOutput(); err != nil {
			l.t.Errorf("ip netns del %s: %v\n%s", filepath.Base(n), err, out)
		}
	}
}

// removeStale deletes the namespaces of labs whose test process is gone.
func removeStale(t testing.TB) {
	names, _ := filepath.Glob(filepath.Join(netnsDir, "mbxlab*-*"))
	for _, n := range names {
		base := filepath.Base(n)
		pid, err := strconv.Atoi(strings.TrimPrefix(base[:strings.Index(base, "-")], "mbxlab"))
		if err != nil || syscall.Kill(pid, 0) == nil {
			continue
		}
		if out, err := exec.Command("ip", "netns", "del", base).CombinedOutput(); err != nil {
			t.Logf("stale lab namespace %s: %v %s", base, err, out)
		}
	}
}

// Command runs name inside the host's network namespace only (nsenter
// --net: the mount namespace, so /sys/fs/cgroup, stays the host's, which
// `ip netns exec` would remount). nsenter execs name itself, so the
// command's pid is the program's.
func (h *Host) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("nsenter", append([]string{"--net=" + filepath.Join(netnsDir, h.ns), "--", name}, args...)...)
}

// DialContext connects from inside the host's namespace: the socket is made
// on a thread that joined the namespace, and stays there. Use it as an
// http.Transport's or a Redis client's dialer.
func (h *Host) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	type dialed struct {
		c   net.Conn
		err error
	}
	ch := make(chan dialed, 1)
	go func() {
		// The dial runs on a thread moved into the host's namespace and
		// moved back after. The thread must survive: a thread that ends
		// (Go ends one left locked) SIGKILLs every child it forked with
		// Pdeathsig, and the lab's processes are such children: redis
		// and the API were seen dying a moment after they were ready.
		runtime.LockOSThread()
		home, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- dialed{nil, err}
			return
		}
		defer home.Close()
		f, err := os.Open(filepath.Join(netnsDir, h.ns))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- dialed{nil, err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- dialed{nil, fmt.Errorf("setns %s: %w", h.ns, os.NewSyscallError("setns", err))}
			return
		}
		var d net.Dialer
		c, err := d.DialContext(ctx, network, addr)
		ch <- dialed{c, err}
		if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and Go ends it with this goroutine
	}()
	r := <-ch
	return r.c, r.err
}
