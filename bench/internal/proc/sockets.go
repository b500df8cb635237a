package proc

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// Socket is one TCP socket of a process.
type Socket struct {
	LocalPort, RemotePort int
}

// TCPSockets lists the TCP sockets (IPv4 and IPv6) that pid holds open,
// matched by inode against /proc/<pid>/net/tcp{,6}. Listening sockets have
// RemotePort 0.
func TCPSockets(pid int) ([]Socket, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return nil, notExist(err)
	}
	inodes := map[string]bool{}
	for _, e := range ents {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, e.Name()))
		if err != nil {
			continue
		}
		if ino, ok := strings.CutPrefix(link, "socket:["); ok {
			inodes[strings.TrimSuffix(ino, "]")] = true
		}
	}
	var out []Socket
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || !inodes[fl[9]] {
				continue
			}
			out = append(out, Socket{LocalPort: hexPort(fl[1]), RemotePort: hexPort(fl[2])})
		}
		f.Close()
	}
	return out, nil
}

// hexPort parses the port of "0100007F:1F90".
func hexPort(addr string) int {
	_, p, ok := strings.Cut(addr, ":")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(p, 16, 32)
	return int(n)
}
