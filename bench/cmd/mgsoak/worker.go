package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"time"

	"github.com/mailgate/mailgate/bench/internal/load"
	"github.com/mailgate/mailgate/bench/internal/proc"
)

// The flood is held by child processes (this program run with -worker), so
// that its connections do not count against this process's open-files
// limit, which also holds the IDLE sessions and the demo backend.
//
// Protocol: the worker makes every connection attempt of its spec, then
// writes its load.HoldStats as one JSON line; after that one line for every
// line it reads on stdin. When stdin closes (or maxLife passes) it closes
// its connections, writes a last line and exits.

// workerSpec is what the parent passes in -worker.
type workerSpec struct {
	Hold    load.HoldSpec `json:"hold"`
	MaxLife time.Duration `json:"max_life"`
}

// runWorker is the child's main.
func runWorker(specJSON string) int {
	var ws workerSpec
	if err := json.Unmarshal([]byte(specJSON), &ws); err != nil {
		fmt.Fprintf(os.Stderr, "mgsoak worker: %v\n", err)
		return 2
	}
	proc.RaiseNoFile()
	ctx, cancel := context.WithTimeout(context.Background(), ws.MaxLife)
	defer cancel()
	h := load.Hold(ctx, ws.Hold)
	enc := json.NewEncoder(os.Stdout)
	enc.Encode(h.Stats())
	lines := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			lines <- struct{}{}
		}
		close(lines)
	}()
	for alive := true; alive; {
		select {
		case _, ok := <-lines:
			if ok {
				enc.Encode(h.Stats())
			} else {
				alive = false
			}
		case <-ctx.Done():
			alive = false
		}
	}
	h.Close()
	enc.Encode(h.Stats())
	return 0
}

// worker is the parent's handle on one flood process.
type worker struct {
	cmd   *exec.Cmd
	in    io.WriteCloser
	lines chan []byte
	done  chan struct{}
}

// startWorker runs this program again as a flood worker.
func startWorker(ws workerSpec, stderr io.Writer) (*worker, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, err := json.Marshal(ws)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-worker", string(spec))
	cmd.Stderr = stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	in, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	w := &worker{cmd: cmd, in: in, lines: make(chan []byte, 4), done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			w.lines <- append([]byte(nil), sc.Bytes()...)
		}
		close(w.lines)
		cmd.Wait()
		close(w.done)
	}()
	return w, nil
}

var errWorkerGone = errors.New("flood worker ended")

// next reads the worker's next stats line.
func (w *worker) next(timeout time.Duration) (load.HoldStats, error) {
	var s load.HoldStats
	select {
	case line, ok := <-w.lines:
		if !ok {
			return s, errWorkerGone
		}
		return s, json.Unmarshal(line, &s)
	case <-time.After(timeout):
		return s, fmt.Errorf("flood worker: no answer within %s", timeout)
	}
}

// stats asks for the worker's counts now.
func (w *worker) stats() (load.HoldStats, error) {
	if _, err := io.WriteString(w.in, "stats\n"); err != nil {
		return load.HoldStats{}, err
	}
	return w.next(10 * time.Second)
}

// stop makes the worker close its connections and exit, and returns its
// last counts; it kills the worker if it does not end in time.
func (w *worker) stop() (load.HoldStats, error) {
	w.in.Close()
	s, err := w.next(30 * time.Second)
	select {
	case <-w.done:
	case <-time.After(10 * time.Second):
		w.cmd.Process.Kill()
		<-w.done
	}
	return s, err
}
