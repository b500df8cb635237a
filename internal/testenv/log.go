package testenv

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

// Log is a daemon's log file. Its zero value reads as an empty log.
type Log struct {
	Path string
}

// String returns the whole log ("" if it does not exist yet).
func (l Log) String() string { return l.Since(0) }

// Mark is the current size of the log, for [Log.Since] and [Log.WaitSince].
func (l Log) Mark() int64 {
	fi, err := os.Stat(l.Path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Since returns what was written after mark.
func (l Log) Since(mark int64) string {
	f, err := os.Open(l.Path)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(mark, io.SeekStart); err != nil {
		return ""
	}
	b, _ := io.ReadAll(f)
	return string(b)
}

// Contains reports whether any line of the log contains substr.
func (l Log) Contains(substr string) bool { return strings.Contains(l.String(), substr) }

// Line returns the first line written after mark that contains substr.
func (l Log) Line(mark int64, substr string) (string, bool) {
	for _, line := range strings.Split(l.Since(mark), "\n") {
		if strings.Contains(line, substr) {
			return line, true
		}
	}
	return "", false
}

// Wait polls until a line containing substr appears after mark and returns
// that line, or the context's error.
func (l Log) Wait(ctx context.Context, mark int64, substr string) (string, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		if line, ok := l.Line(mark, substr); ok {
			return line, nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("no log line with %q in %s: %w", substr, l.Path, ctx.Err())
		case <-t.C:
		}
	}
}

// WaitSince is Wait for tests: it fails tb (showing the log's tail) when no
// matching line appears after mark within timeout.
func (l Log) WaitSince(tb testing.TB, mark int64, substr string, timeout time.Duration) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	line, err := l.Wait(ctx, mark, substr)
	if err != nil {
		tb.Fatalf("%v\n%s", err, l.TailBlock(40))
	}
	return line
}

// Tail returns the last n lines.
func (l Log) Tail(n int) string {
	lines := strings.Split(strings.TrimRight(l.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TailBlock is Tail with a header naming the file, for failure messages.
func (l Log) TailBlock(n int) string {
	return fmt.Sprintf("--- last %d lines of %s ---\n%s\n---", n, l.Path, l.Tail(n))
}
