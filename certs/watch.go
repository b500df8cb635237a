package certs

import (
	"context"
	"os"
	"time"
)

// DefaultWatchInterval is the poll interval of Watch when given none.
const DefaultWatchInterval = 5 * time.Second

// Watch polls the certificate and key files every interval (<= 0 means
// DefaultWatchInterval) and calls Reload when any file's identity (device and
// inode), size or modification time has changed, until ctx is done. It
// follows symlinks, so the Kubernetes secret-volume swap of the "..data" link
// is seen as a change. A failed reload is logged and retried only after the
// files change again. Run it in its own goroutine.
//
// Polling rather than fsnotify: a stat of a few files every few seconds is
// negligible, works the same on bind mounts, network filesystems and symlink
// swaps (fsnotify needs a watch on each directory along every link), and
// needs no watcher to set up and fail. The cost is up to one interval of
// delay.
func (s *Store) Watch(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	seen := s.cur.Load().stamps
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := statAll(s.pairs)
		if sameStamps(now, seen) {
			continue
		}
		seen = now
		if sameStamps(now, s.cur.Load().stamps) {
			continue // already loaded, e.g. by a SIGHUP Reload
		}
		s.logger.Info("certificate files changed, reloading")
		_ = s.Reload() // logs its outcome
	}
}

// stamp identifies one version of a file.
type stamp struct {
	info os.FileInfo // nil if err != ""
	err  string
}

func statAll(pairs []Pair) []stamp {
	out := make([]stamp, 0, 2*len(pairs))
	for _, p := range pairs {
		for _, name := range []string{p.CertFile, p.KeyFile} {
			fi, err := os.Stat(name)
			if err != nil {
				out = append(out, stamp{err: err.Error()})
				continue
			}
			out = append(out, stamp{info: fi})
		}
	}
	return out
}

func sameStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if x.err != y.err || (x.info == nil) != (y.info == nil) {
			return false
		}
		if x.info != nil && (!os.SameFile(x.info, y.info) || x.info.Size() != y.info.Size() || !x.info.ModTime().Equal(y.info.ModTime())) {
			return false
		}
	}
	return true
}
