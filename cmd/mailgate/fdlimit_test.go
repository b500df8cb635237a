package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/mailgate/mailgate/config"
)

func TestFitCaps(t *testing.T) {
	for _, tt := range []struct {
		name  string
		limit uint64
		in    connCaps
		want  connCaps
		ok    bool
	}{
		{"defaults fit a large limit", 1 << 20, connCaps{10000, 1000}, connCaps{10000, 1000}, true},
		{"exactly fits", 256 + 2*11000, connCaps{10000, 1000}, connCaps{10000, 1000}, true},
		{"one short", 256 + 2*11000 - 2, connCaps{10000, 1000}, connCaps{9999, 1000}, true},
		{"prelogin to a tenth, sessions the rest", 20000, connCaps{10000, 1000}, connCaps{8885, 987}, true},
		{"small limit", 400, connCaps{10000, 1000}, connCaps{62, 10}, true},
		{"small sessions kept", 400, connCaps{5, 1000}, connCaps{5, 10}, true},
		{"prelogin kept when sessions make room", 400, connCaps{100, 10}, connCaps{62, 10}, true},
		{"unlimited sessions", 4096, connCaps{0, 1000}, connCaps{1728, 192}, true},
		{"unlimited prelogin", 4096, connCaps{10000, 0}, connCaps{1728, 192}, true},
		{"both unlimited", 4096, connCaps{0, 0}, connCaps{1728, 192}, true},
		{"too small for the floors", 270, connCaps{10000, 1000}, connCaps{10, 10}, false},
		{"below the headroom", 100, connCaps{10000, 1000}, connCaps{10, 10}, false},
		{"floors never raise a cap", 100, connCaps{3, 4}, connCaps{3, 4}, false},
		{"huge limit", 1 << 62, connCaps{10000, 1000}, connCaps{10000, 1000}, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := fitCaps(tt.limit, tt.in)
			if got != tt.want || ok != tt.ok {
				t.Fatalf("fitCaps(%d, %+v) = %+v, %v; want %+v, %v", tt.limit, tt.in, got, ok, tt.want, tt.ok)
			}
			if n, bounded := got.fdsNeeded(); ok && (!bounded || uint64(n) > tt.limit) {
				t.Errorf("fitted caps %+v need %d descriptors (bounded %v), limit %d", got, n, bounded, tt.limit)
			}
		})
	}
}

func TestFitToOpenFilesLogsOnce(t *testing.T) {
	cfg := config.Default()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	if got := fitToOpenFiles(&cfg, 1<<20, log); got != (connCaps{10000, 1000}) || buf.Len() != 0 {
		t.Fatalf("fits: got %+v, logged %q", got, buf.String())
	}
	if got := fitToOpenFiles(&cfg, 0, log); got != (connCaps{10000, 1000}) || buf.Len() != 0 {
		t.Fatalf("unknown limit: got %+v, logged %q", got, buf.String())
	}
	got := fitToOpenFiles(&cfg, 1024, log)
	if got != (connCaps{346, 38}) {
		t.Fatalf("got %+v", got)
	}
	line := buf.String()
	if strings.Count(line, "\n") != 1 || !strings.Contains(line, "level=WARN") {
		t.Fatalf("want one WARN line, got %q", line)
	}
	for _, want := range []string{"open_files_limit=1024", "descriptors_needed=22256", `limits.max_connections="10000 -> 346"`,
		`limits.max_prelogin_connections="1000 -> 38"`, "ulimit -n", "LimitNOFILE", "--ulimit nofile"} {
		if !strings.Contains(line, want) {
			t.Errorf("log line lacks %q: %s", want, line)
		}
	}
	if cfg.Limits.MaxConnections != 10000 {
		t.Error("the configuration was changed (a reload would see limits as changed)")
	}
}

func TestOpenFilesAdvice(t *testing.T) {
	cfg := config.Default()
	if s := openFilesAdvice(&cfg, 1<<20); s != "" {
		t.Errorf("fits, yet: %s", s)
	}
	if s := openFilesAdvice(&cfg, 0); s != "" {
		t.Errorf("unknown limit, yet: %s", s)
	}
	s := openFilesAdvice(&cfg, 4096)
	for _, want := range []string{"limits.max_connections", "22256", "4096", "lower them to 1728 and 192", "ulimit -n"} {
		if !strings.Contains(s, want) {
			t.Errorf("advice lacks %q: %s", want, s)
		}
	}
	if s := openFilesAdvice(&cfg, 200); !strings.Contains(s, "too few") {
		t.Errorf("advice at 200: %s", s)
	}
}
