// Package proc reads what the benchmarks measure of other processes from
// /proc: resident and proportional set sizes, peak RSS, CPU time, open file
// descriptors, and the members of a process group or session.
package proc

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// clockTicks is USER_HZ, the unit of the CPU times in /proc/<pid>/stat
// (100 on every Linux architecture Go supports).
const clockTicks = 100

// ErrNoProcess is returned when the process does not exist (any more).
var ErrNoProcess = errors.New("proc: no such process")

// Mem is one process's memory in KiB.
type Mem struct {
	RSS int64 // VmRSS
	HWM int64 // VmHWM: peak RSS since start or the last ResetPeak
	PSS int64 // Pss of smaps_rollup: shared pages divided among their users
}

// Add returns m + o.
func (m Mem) Add(o Mem) Mem { return Mem{RSS: m.RSS + o.RSS, HWM: m.HWM + o.HWM, PSS: m.PSS + o.PSS} }

// Memory reads VmRSS and VmHWM from /proc/<pid>/status and Pss from
// /proc/<pid>/smaps_rollup.
func Memory(pid int) (Mem, error) {
	var m Mem
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return m, notExist(err)
	}
	m.RSS = kbField(status, "VmRSS:")
	m.HWM = kbField(status, "VmHWM:")
	rollup, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		return m, notExist(err)
	}
	m.PSS = kbField(rollup, "Pss:")
	return m, nil
}

// kbField returns the number after key in a "Key:   123 kB" file (0 if absent).
func kbField(b []byte, key string) int64 {
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// Threads returns the Threads: count of /proc/<pid>/status.
func Threads(pid int) (int, error) {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, notExist(err)
	}
	return int(kbField(status, "Threads:")), nil
}

// ResetPeak resets VmHWM to the current RSS (writes 5 to clear_refs).
func ResetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// FDs counts the open file descriptors of pid.
func FDs(pid int) (int, error) {
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return 0, notExist(err)
	}
	return len(ents), nil
}

// Stat is what the benchmarks use of /proc/<pid>/stat.
type Stat struct {
	PID, PPID, PGID, SID int
	// CPU is utime+stime in seconds; ChildCPU is cutime+cstime (reaped
	// children) in seconds.
	CPU, ChildCPU float64
}

// ReadStat parses /proc/<pid>/stat.
func ReadStat(pid int) (Stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return Stat{}, notExist(err)
	}
	// The command name is in parentheses and may contain anything.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Stat{}, fmt.Errorf("proc: /proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); field n is f[n-3].
	if len(f) < 15 {
		return Stat{}, fmt.Errorf("proc: /proc/%d/stat: %d fields", pid, len(f))
	}
	num := func(n int) int64 { v, _ := strconv.ParseInt(f[n-3], 10, 64); return v }
	return Stat{
		PID:      pid,
		PPID:     int(num(4)),
		PGID:     int(num(5)),
		SID:      int(num(6)),
		CPU:      float64(num(14)+num(15)) / clockTicks,
		ChildCPU: float64(num(16)+num(17)) / clockTicks,
	}, nil
}

// All returns the stat of every process on the machine.
func All() ([]Stat, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var out []Stat
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st, err := ReadStat(pid); err == nil {
			out = append(out, st)
		}
	}
	return out, nil
}

// Session returns the pids of every process in session sid.
func Session(sid int) []int {
	all, _ := All()
	var pids []int
	for _, st := range all {
		if st.SID == sid {
			pids = append(pids, st.PID)
		}
	}
	return pids
}

// Group returns the pids of every process in process group pgid.
func Group(pgid int) []int {
	all, _ := All()
	var pids []int
	for _, st := range all {
		if st.PGID == pgid {
			pids = append(pids, st.PID)
		}
	}
	return pids
}

// FindByCmdline returns the first pid whose command line contains substr.
func FindByCmdline(substr string) (int, bool) {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, m := range matches {
		b, err := os.ReadFile(m)
		if err != nil {
			continue
		}
		if bytes.Contains(bytes.ReplaceAll(b, []byte{0}, []byte{' '}), []byte(substr)) {
			pid, err := strconv.Atoi(filepath.Base(filepath.Dir(m)))
			if err == nil {
				return pid, true
			}
		}
	}
	return 0, false
}

// SumMemory adds up the memory of pids; processes that vanished are skipped.
func SumMemory(pids []int) Mem {
	var total Mem
	for _, pid := range pids {
		if m, err := Memory(pid); err == nil {
			total = total.Add(m)
		}
	}
	return total
}

// SumCPU adds up utime+stime of pids, plus the reaped children's CPU of
// parent (when parent is not 0), in seconds.
func SumCPU(pids []int, parent int) float64 {
	var total float64
	for _, pid := range pids {
		st, err := ReadStat(pid)
		if err != nil {
			continue
		}
		total += st.CPU
		if pid == parent {
			total += st.ChildCPU
		}
	}
	return total
}

func notExist(err error) error {
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%w: %v", ErrNoProcess, err)
	}
	return err
}

// RaiseNoFile sets this process's soft RLIMIT_NOFILE to its hard limit and
// returns the new limit.
func RaiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, err
	}
	return rl.Cur, nil
}

// NoFileLimit is the soft "Max open files" of pid (/proc/<pid>/limits).
func NoFileLimit(pid int) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return 0, notExist(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, fmt.Errorf("proc: /proc/%d/limits: no Max open files", pid)
}
