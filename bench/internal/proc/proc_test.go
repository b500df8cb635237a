package proc

import (
	"errors"
	"net"
	"os"
	"testing"
)

func TestSelf(t *testing.T) {
	pid := os.Getpid()
	m, err := Memory(pid)
	if err != nil {
		t.Fatal(err)
	}
	if m.RSS <= 0 || m.PSS <= 0 || m.HWM < m.RSS {
		t.Errorf("memory %+v", m)
	}
	st, err := ReadStat(pid)
	if err != nil || st.PID != pid || st.PPID != os.Getppid() {
		t.Errorf("stat %+v, %v", st, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	socks, err := TCPSockets(pid)
	if err != nil {
		t.Fatal(err)
	}
	var listening, connected bool
	for _, s := range socks {
		listening = listening || (s.LocalPort == port && s.RemotePort == 0)
		connected = connected || s.RemotePort == port
	}
	if !listening || !connected {
		t.Errorf("sockets %+v: listener %v, client %v (port %d)", socks, listening, connected, port)
	}
	if n, err := FDs(pid); err != nil || n < 3 {
		t.Errorf("fds %d, %v", n, err)
	}
}

func TestNoProcess(t *testing.T) {
	if _, err := Memory(1 << 30); !errors.Is(err, ErrNoProcess) {
		t.Errorf("got %v, want ErrNoProcess", err)
	}
}
