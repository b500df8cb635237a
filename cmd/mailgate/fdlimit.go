package main

import (
	"fmt"
	"log/slog"
	"math"
	"strconv"

	"github.com/mailgate/mailgate/config"
)

// Every logged-in session holds two descriptors (the client's connection and
// the backend's), and so may a pre-login connection while it logs in to the
// backend. fdHeadroom is kept for everything else: the listeners, the
// provider's HTTP client, the operations endpoint, log files, the runtime's
// own (epoll, pipes), and later a Redis client.
const (
	fdsPerConn = 2
	fdHeadroom = 256
)

// Floors of the caps that fitCaps lowers: below them mailgate is no use, and
// the operator must raise the open-files limit instead.
const (
	minMaxConnections = 10
	minMaxPrelogin    = 10
)

// raiseHint says how to give mailgate more descriptors.
const raiseHint = "raise the hard open-files limit: ulimit -n, systemd LimitNOFILE=, docker run --ulimit nofile=N:N"

// connCaps are limits.max_connections (logged-in sessions) and
// limits.max_prelogin_connections, in the configuration's convention: 0 is
// no limit.
type connCaps struct{ sessions, prelogin int }

func capsOf(cfg *config.Config) connCaps {
	return connCaps{cfg.Limits.MaxConnections, cfg.Limits.MaxPreloginConnections}
}

// fdsNeeded is the number of descriptors c may use at most; ok is false when
// a cap is unlimited.
func (c connCaps) fdsNeeded() (n int, ok bool) {
	if c.sessions == 0 || c.prelogin == 0 {
		return 0, false
	}
	return fdsPerConn*(c.sessions+c.prelogin) + fdHeadroom, true
}

// connSlots is how many connections (each counted at fdsPerConn descriptors)
// fit in limit descriptors beside fdHeadroom.
func connSlots(limit uint64) int {
	if limit <= fdHeadroom {
		return 0
	}
	return int(min((limit-fdHeadroom)/fdsPerConn, math.MaxInt32))
}

// fitCaps returns caps that fit in limit open files: c itself when it fits.
// Otherwise the pre-login pool gets at most a tenth of the room (not below
// minMaxPrelogin) and the logged-in pool the rest (not below
// minMaxConnections), so that the pre-login pool stays the small one; an
// unlimited cap counts as all the room there is. A cap is never raised. ok
// is false when even the floors do not fit.
func fitCaps(limit uint64, c connCaps) (fit connCaps, ok bool) {
	slots := connSlots(limit)
	if c.sessions != 0 && c.prelogin != 0 && c.sessions+c.prelogin <= slots {
		return c, true
	}
	fit.prelogin = lowerTo(c.prelogin, max(slots/preloginShare, minMaxPrelogin))
	fit.sessions = lowerTo(c.sessions, max(slots-fit.prelogin, minMaxConnections))
	return fit, fit.sessions+fit.prelogin <= slots
}

// preloginShare: the pre-login pool gets at most 1/preloginShare of the
// descriptors when the configured caps do not fit.
const preloginShare = 10

// lowerTo returns the cap n (0 = no limit) lowered to at most to.
func lowerTo(n, to int) int {
	if n == 0 {
		return to
	}
	return min(n, to)
}

// capText shows a cap in the configuration's terms.
func capText(n int) string {
	if n == 0 {
		return "no limit"
	}
	return strconv.Itoa(n)
}

// fitToOpenFiles returns the caps of cfg fitted to limit open files (0:
// unknown, cfg's caps as they are), and logs one warning when it had to lower
// them. cfg is not changed, so that a reload still compares the configured
// values.
func fitToOpenFiles(cfg *config.Config, limit uint64, log *slog.Logger) connCaps {
	want := capsOf(cfg)
	if limit == 0 {
		return want
	}
	fit, ok := fitCaps(limit, want)
	if fit == want {
		return want
	}
	need, _ := want.fdsNeeded()
	msg := "connection caps lowered to fit the open-files limit"
	if !ok {
		msg = "open-files limit too low even for the lowest connection caps"
	}
	log.Warn(msg,
		"open_files_limit", limit,
		"descriptors_needed", needText(need),
		"limits.max_connections", capText(want.sessions)+" -> "+capText(fit.sessions),
		"limits.max_prelogin_connections", capText(want.prelogin)+" -> "+capText(fit.prelogin),
		"hint", raiseHint)
	return fit
}

func needText(n int) string {
	if n == 0 {
		return "unbounded"
	}
	return strconv.Itoa(n)
}

// openFilesAdvice is check-config's warning when the caps of cfg do not fit
// in hard open files (what serve raises its limit to), or "".
func openFilesAdvice(cfg *config.Config, hard uint64) string {
	want := capsOf(cfg)
	if hard == 0 || want.sessions < 0 || want.prelogin < 0 {
		return ""
	}
	fit, ok := fitCaps(hard, want)
	if fit == want {
		return ""
	}
	need, _ := want.fdsNeeded()
	s := fmt.Sprintf("limits.max_connections, limits.max_prelogin_connections: need %s open files (%d per connection + %d), this process's hard limit is %d; ",
		needText(need), fdsPerConn, fdHeadroom, hard)
	if ok {
		s += fmt.Sprintf("serve would lower them to %s and %s; ", capText(fit.sessions), capText(fit.prelogin))
	} else {
		s += "too few even for the lowest caps; "
	}
	return s + raiseHint
}
