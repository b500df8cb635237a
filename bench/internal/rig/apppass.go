package rig

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
)

// SupportsAppPasswords reports whether the mailgate binary has app
// passwords (the `app-passwords` command; an older release has neither it
// nor the app_passwords section).
func SupportsAppPasswords(binary string) bool {
	return exec.Command(binary, "app-passwords", "--help").Run() == nil
}

// CreateAppPassword makes an app password for user named name in the
// store of the configuration file conf, with the binary's own command
// (`mailgate app-passwords create`, so that the store's schema is the
// binary's), and returns it (mgp_<id>_<secret>). The password may be used
// with every protocol the configuration's app_passwords.protocols allows,
// and never expires.
func CreateAppPassword(ctx context.Context, binary, conf, user, name string) (string, error) {
	out, err := exec.CommandContext(ctx, binary, "app-passwords", "create",
		"--config", conf, "--user", user, "--name", name).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mailgate app-passwords create --user %s: %w: %s", user, err, strings.TrimSpace(string(out)))
	}
	// The password is printed once, alone on an indented line.
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "mgp_") {
			return f, nil
		}
	}
	return "", fmt.Errorf("mailgate app-passwords create --user %s: no mgp_ password in its output (%d bytes)", user, len(out))
}
