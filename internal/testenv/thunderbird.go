package testenv

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const (
	// thunderbirdQuitTimeout bounds the wait for Thunderbird to exit after
	// SIGTERM, before its process group is killed.
	thunderbirdQuitTimeout = 20 * time.Second
	// xvfbStartTimeout bounds the wait for Xvfb's socket.
	xvfbStartTimeout = 10 * time.Second
	// firstDisplay is the first X display number tried for Xvfb.
	firstDisplay = 90
)

// ThunderbirdHost is where the Thunderbird tools were found.
type ThunderbirdHost struct {
	Thunderbird string // the thunderbird binary (not Debian's /usr/bin wrapper script)
	Xvfb        string // the virtual X server
	Certutil    string // NSS certutil (libnss3-tools), to trust a CA in a profile
}

// ThunderbirdBinary is the Thunderbird used: $MAILGATE_THUNDERBIRD_BIN, else
// /usr/lib/thunderbird/thunderbird (Debian's package; /usr/bin/thunderbird is
// a wrapper script that looks for old Icedove profiles), else thunderbird in
// PATH.
func ThunderbirdBinary() string {
	if p := os.Getenv("MAILGATE_THUNDERBIRD_BIN"); p != "" {
		return p
	}
	const debian = "/usr/lib/thunderbird/thunderbird"
	if _, err := os.Stat(debian); err == nil {
		return debian
	}
	if p, err := exec.LookPath("thunderbird"); err == nil {
		return p
	}
	return debian
}

// CheckThunderbird looks for Thunderbird, Xvfb and certutil; the error wraps
// [ErrUnavailable] and lists everything missing.
func CheckThunderbird() (ThunderbirdHost, error) {
	var h ThunderbirdHost
	var missing []string
	if p := ThunderbirdBinary(); isExecutable(p) {
		h.Thunderbird = p
	} else {
		missing = append(missing, "Thunderbird "+p+" (Debian package thunderbird, or set MAILGATE_THUNDERBIRD_BIN)")
	}
	for _, t := range []struct{ name, pkg string }{{"Xvfb", "xvfb"}, {"certutil", "libnss3-tools"}} {
		p, err := exec.LookPath(t.name)
		if err != nil && isExecutable("/usr/bin/"+t.name) {
			p, err = "/usr/bin/"+t.name, nil
		}
		if err != nil {
			missing = append(missing, t.name+" (Debian package "+t.pkg+")")
			continue
		}
		if t.name == "Xvfb" {
			h.Xvfb = p
		} else {
			h.Certutil = p
		}
	}
	if len(missing) > 0 {
		return h, fmt.Errorf("%w: missing %s", ErrUnavailable, strings.Join(missing, ", "))
	}
	return h, nil
}

// RequireThunderbird is [Require] for Thunderbird, Xvfb and certutil: it
// skips tb when one is missing, or fails it when MAILGATE_INTEGRATION=1.
func RequireThunderbird(tb testing.TB) ThunderbirdHost {
	tb.Helper()
	h, err := CheckThunderbird()
	if err != nil {
		unavailable(tb, err)
	}
	return h
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}

// ThunderbirdAccount is the mail account preconfigured in a profile: IMAP
// and SMTP submission, both with implicit TLS and OAuth2 (authMethod 10),
// the address as the user name of both.
type ThunderbirdAccount struct {
	Email    string // the address: identity and user name
	FullName string // the identity's name. Empty: Email
	IMAPHost string // host name as the account has it (the OAuth provider is chosen by it)
	IMAPPort int
	SMTPHost string // empty: IMAPHost
	SMTPPort int
	// SaveSent saves a copy of sent messages in the Sent folder on the IMAP
	// server (an APPEND after each send). False: no copy.
	SaveSent bool
}

// Addon is a WebExtension (.xpi) installed into a profile.
type Addon struct {
	ID  string // the gecko id (browser_specific_settings.gecko.id)
	XPI []byte
}

// ThunderbirdOptions configures [NewThunderbird].
type ThunderbirdOptions struct {
	Account ThunderbirdAccount
	// CACertPEM is a CA certificate the profile trusts to identify servers
	// (certutil -t "C,,").
	CACertPEM []byte
	// Addons are installed into the profile and enabled without a prompt.
	Addons []Addon
	// Prefs are more preferences (string, bool or int values); they
	// override the defaults.
	Prefs map[string]any
	// Env is more environment for Thunderbird (MOZ_LOG=..., for debugging).
	Env []string
}

// Thunderbird is a Thunderbird profile and, while started, a Thunderbird on
// it under an Xvfb of its own. The profile can be started again once
// Thunderbird has quit (WaitQuit).
// Exported fields are read-only.
type Thunderbird struct {
	Dir        string // instance directory: profile, HOME, logs
	ProfileDir string
	Log        Log // Thunderbird's stdout and stderr of the current or last start

	host ThunderbirdHost
	env  []string
	runs int
	xvfb *daemon
	tb   *daemon
	disp int
}

// NewThunderbird creates a fresh profile (see [ThunderbirdOptions]); Start
// runs Thunderbird on it. It skips or fails tb (see [RequireThunderbird])
// when a tool is missing. tb.Cleanup stops Thunderbird and removes Dir.
func NewThunderbird(tb testing.TB, opts ThunderbirdOptions) *Thunderbird {
	tb.Helper()
	host := RequireThunderbird(tb)
	dir, err := makeInstanceDir("", "thunderbird")
	if err != nil {
		tb.Fatal(err)
	}
	t := &Thunderbird{Dir: dir, ProfileDir: filepath.Join(dir, "profile"), host: host}
	tb.Cleanup(func() {
		if tb.Failed() && t.runs > 0 {
			tb.Logf("--- thunderbird output of start %d (%s), without noise, last 60 lines ---\n%s\n---", t.runs, t.Log.Path, tail(t.Output(), 60))
		}
		if err := t.stop(); err != nil {
			tb.Errorf("stop thunderbird: %v", err)
		}
		if err := removeInstanceDir(dir); err != nil {
			tb.Errorf("remove thunderbird dir: %v", err)
		}
	})
	if err := t.writeProfile(opts); err != nil {
		tb.Fatalf("thunderbird profile: %v", err)
	}
	return t
}

func (t *Thunderbird) writeProfile(opts ThunderbirdOptions) error {
	home, run := filepath.Join(t.Dir, "home"), filepath.Join(t.Dir, "run")
	for _, d := range []string{t.ProfileDir, filepath.Join(t.ProfileDir, "extensions"), home, run, filepath.Join(t.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
	}
	t.env = append(append([]string(nil), daemonEnv...),
		"HOME="+home,
		"TMPDIR="+filepath.Join(t.Dir, "tmp"),
		"XDG_RUNTIME_DIR="+run,
		"MOZ_CRASHREPORTER_DISABLE=1",
		"MOZ_DISABLE_AUTO_SAFE_MODE=1",
		"NO_AT_BRIDGE=1", // no accessibility bus (there is no D-Bus session)
		// Lets services.settings.server point nowhere (else remote settings
		// are fetched from thunderbird-settings.thunderbird.net).
		"MOZ_REMOTE_SETTINGS_DEVTOOLS=1",
	)
	t.env = append(t.env, opts.Env...)

	prefs := defaultThunderbirdPrefs()
	for k, v := range opts.Account.prefs() {
		prefs[k] = v
	}
	for k, v := range opts.Prefs {
		prefs[k] = v
	}
	userJS, err := formatPrefs(prefs)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(t.ProfileDir, "user.js"), userJS, 0o600); err != nil {
		return err
	}
	for _, a := range opts.Addons {
		if a.ID == "" || strings.ContainsAny(a.ID, "/\\") {
			return fmt.Errorf("add-on id %q", a.ID)
		}
		if err := os.WriteFile(filepath.Join(t.ProfileDir, "extensions", a.ID+".xpi"), a.XPI, 0o600); err != nil {
			return err
		}
	}
	// An NSS database with an empty password (the login manager encrypts
	// the refresh token with key4.db), and the CA trusted for servers.
	db := "sql:" + t.ProfileDir
	if out, err := runQuiet(nil, t.host.Certutil, "-N", "-d", db, "--empty-password"); err != nil {
		return fmt.Errorf("certutil -N: %v: %s", err, out)
	}
	if len(opts.CACertPEM) > 0 {
		ca := filepath.Join(t.Dir, "ca.pem")
		if err := os.WriteFile(ca, opts.CACertPEM, 0o644); err != nil {
			return err
		}
		if out, err := runQuiet(nil, t.host.Certutil, "-A", "-d", db, "-n", "mailgate test CA", "-t", "C,,", "-i", ca); err != nil {
			return fmt.Errorf("certutil -A: %v: %s", err, out)
		}
	}
	return nil
}

// Start starts Xvfb and Thunderbird on the profile and returns once both
// run; whether Thunderbird does what it should is for the test to see (an
// add-on reporting to it, server logs). It fails tb if Thunderbird already
// runs or does not start.
func (t *Thunderbird) Start(tb testing.TB) {
	tb.Helper()
	if t.tb != nil {
		tb.Fatal("thunderbird: already started")
	}
	if err := t.startXvfb(); err != nil {
		tb.Fatalf("xvfb: %v", err)
	}
	t.runs++
	t.Log = Log{Path: filepath.Join(t.Dir, fmt.Sprintf("thunderbird-%d.log", t.runs))}
	// Written again at each shutdown phase; WaitQuit reads this run's.
	if err := os.Remove(filepath.Join(t.ProfileDir, "sessionCheckpoints.json")); err != nil && !os.IsNotExist(err) {
		tb.Fatal(err)
	}
	env := append(append([]string(nil), t.env...), "DISPLAY=:"+strconv.Itoa(t.disp))
	d, err := startDaemon("thunderbird", t.host.Thunderbird, []string{"--profile", t.ProfileDir, "--no-remote"}, env, t.Log.Path, t.Dir, "")
	if err != nil {
		t.xvfb.stop()
		t.xvfb = nil
		tb.Fatal(err)
	}
	t.tb = d
}

// startXvfb starts an Xvfb on the first free display from firstDisplay and
// waits until its socket accepts connections.
func (t *Thunderbird) startXvfb() error {
	ctx, cancel := context.WithTimeout(context.Background(), xvfbStartTimeout)
	defer cancel()
	logPath := filepath.Join(t.Dir, "xvfb.log")
	disp := firstDisplay
	for attempt := 1; ; attempt++ {
		for ; disp < firstDisplay+200; disp++ {
			if _, err := os.Stat(fmt.Sprintf("/tmp/.X%d-lock", disp)); os.IsNotExist(err) {
				break
			}
		}
		sock := fmt.Sprintf("/tmp/.X11-unix/X%d", disp)
		d, err := startDaemon("xvfb", t.host.Xvfb, []string{":" + strconv.Itoa(disp), "-nolisten", "tcp", "-screen", "0", "1280x1024x24"},
			daemonEnv, logPath, t.Dir, "")
		if err != nil {
			return err
		}
		err = pollReady(ctx, d, []func(context.Context) error{func(ctx context.Context) error {
			c, err := (&net.Dialer{}).DialContext(ctx, "unix", sock)
			if err == nil {
				c.Close()
			}
			return err
		}})
		if err == nil {
			t.xvfb, t.disp = d, disp
			return nil
		}
		d.stop()
		// Another Xvfb took the display between the check and the start.
		if attempt < maxStartAttempts && errors.Is(err, errExited) {
			disp++
			continue
		}
		return fmt.Errorf("did not start on :%d: %w\n%s", disp, err, Log{Path: logPath}.TailBlock(20))
	}
}

// Exited is closed when the running Thunderbird exits (nil when none was started).
func (t *Thunderbird) Exited() <-chan struct{} {
	if t.tb == nil {
		return nil
	}
	return t.tb.done
}

// WaitQuit waits until Thunderbird quits by itself (the test made it quit
// the way a user does, e.g. an add-on closing its last window), checks that
// it shut down cleanly, and stops Xvfb. A clean shutdown is one that reached
// the profile-before-change phase, where Thunderbird writes what it saves
// lazily (logins.json, with the OAuth refresh token, 1.5 s after a change).
// It fails tb otherwise.
func (t *Thunderbird) WaitQuit(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	if t.tb == nil {
		tb.Fatal("thunderbird: not started")
	}
	select {
	case <-t.tb.done:
	case <-time.After(timeout):
		tb.Fatalf("thunderbird did not quit within %v\n%s", timeout, t.Log.TailBlock(30))
	}
	if err := t.stop(); err != nil {
		tb.Fatalf("thunderbird: %v", err)
	}
	if !t.cleanShutdown() {
		b, _ := os.ReadFile(filepath.Join(t.ProfileDir, "sessionCheckpoints.json"))
		tb.Fatalf("thunderbird quit without a clean shutdown (sessionCheckpoints.json: %s)\n%s", b, t.Log.TailBlock(30))
	}
}

// cleanShutdown reports whether the last Thunderbird run shut down through
// profile-before-change (its sessionCheckpoints.json, removed by Start, says
// so).
func (t *Thunderbird) cleanShutdown() bool {
	b, err := os.ReadFile(filepath.Join(t.ProfileDir, "sessionCheckpoints.json"))
	if err != nil {
		return false
	}
	var cp map[string]bool
	return json.Unmarshal(b, &cp) == nil && cp["profile-before-change"]
}

// stop stops a running Thunderbird (SIGTERM, then SIGKILL to its process
// group after thunderbirdQuitTimeout) and Xvfb. Thunderbird exits on SIGTERM
// without its later shutdown phases, so what it saves lazily may be lost:
// tests make it quit and use WaitQuit instead.
func (t *Thunderbird) stop() error {
	var err error
	if t.tb != nil {
		if !t.tb.exited() {
			_ = syscall.Kill(t.tb.pid(), syscall.SIGTERM)
			select {
			case <-t.tb.done:
			case <-time.After(thunderbirdQuitTimeout):
				err = fmt.Errorf("did not quit within %v of SIGTERM; killed", thunderbirdQuitTimeout)
			}
		}
		// Its content processes are in its group; normally gone already.
		if e := t.tb.stop(); err == nil {
			err = e
		}
		t.tb = nil
	}
	if t.xvfb != nil {
		if e := t.xvfb.stop(); err == nil {
			err = e
		}
		t.xvfb = nil
	}
	return err
}

// defaultThunderbirdPrefs keep Thunderbird quiet and local: no first-run,
// default-client, donation or what's-new pages, no telemetry, updates,
// add-on, remote-settings, safe-browsing, captive-portal or OCSP traffic
// (it must not reach past loopback), unsigned add-ons in the profile
// enabled without a prompt, OAuth in Thunderbird's own window.
func defaultThunderbirdPrefs() map[string]any {
	return map[string]any{
		"mail.provider.suppress_dialog_on_startup":                    true,
		"mail.shell.checkDefaultClient":                               false,
		"mailnews.start_page.enabled":                                 false,
		"mailnews.start_page_override.mstone":                         "ignore",
		"mail.rights.version":                                         1,
		"mail.inappnotifications.enabled":                             false,
		"mail.biff.show_alert":                                        false,
		"mail.biff.play_sound":                                        false,
		"mail.biff.show_tray_icon":                                    false,
		"mail.compose.autosave":                                       false,
		"mailnews.database.global.indexer.enabled":                    false,
		"mailnews.oauth.useExternalBrowser":                           false,
		"mailnews.oauth.loglevel":                                     "Debug",
		"browser.dom.window.dump.enabled":                             true,
		"devtools.console.stdout.chrome":                              true,
		"devtools.console.stdout.content":                             true,
		"datareporting.policy.dataSubmissionEnabled":                  false,
		"datareporting.policy.dataSubmissionPolicyBypassNotification": true,
		"datareporting.healthreport.uploadEnabled":                    false,
		"toolkit.telemetry.enabled":                                   false,
		"toolkit.telemetry.unified":                                   false,
		"toolkit.telemetry.archive.enabled":                           false,
		"toolkit.telemetry.server":                                    "",
		"toolkit.startup.max_resumed_crashes":                         -1,
		"app.update.auto":                                             false,
		"app.update.checkInstallTime":                                 false,
		"app.update.disabledForTesting":                               true,
		"app.normandy.enabled":                                        false,
		"browser.shell.checkDefaultBrowser":                           false,
		"browser.startup.homepage_override.mstone":                    "ignore",
		"browser.safebrowsing.malware.enabled":                        false,
		"browser.safebrowsing.phishing.enabled":                       false,
		"browser.safebrowsing.blockedURIs.enabled":                    false,
		"browser.safebrowsing.downloads.enabled":                      false,
		"browser.safebrowsing.update.enabled":                         false,
		"extensions.autoDisableScopes":                                0,
		"extensions.enabledScopes":                                    15,
		"extensions.update.enabled":                                   false,
		"extensions.update.autoUpdateDefault":                         false,
		"extensions.getAddons.cache.enabled":                          false,
		"extensions.blocklist.enabled":                                false,
		"extensions.systemAddon.update.enabled":                       false,
		"xpinstall.signatures.required":                               false,
		"browser.region.network.url":                                  "",
		"browser.region.update.enabled":                               false,
		"services.settings.server":                                    "data:,#remote-settings-dummy/v1",
		"security.OCSP.enabled":                                       0,
		"security.remote_settings.crlite_filters.enabled":             false,
		"security.remote_settings.intermediates.enabled":              false,
		"network.connectivity-service.enabled":                        false,
		"network.captive-portal-service.enabled":                      false,
		"network.dns.disablePrefetch":                                 true,
		"network.prefetch-next":                                       false,
		"network.trr.mode":                                            5,
		"dom.push.connection.enabled":                                 false,
		"geo.provider.network.url":                                    "",
		"calendar.timezone.local":                                     "UTC",
		"toolkit.cosmeticAnimations.enabled":                          false,
	}
}

// prefs are the account's preferences: account1 (IMAP, server1, identity
// id1, SMTP smtp1) and account2 (Local Folders, server2).
func (a ThunderbirdAccount) prefs() map[string]any {
	if a.Email == "" {
		return map[string]any{}
	}
	name := a.FullName
	if name == "" {
		name = a.Email
	}
	smtpHost := a.SMTPHost
	if smtpHost == "" {
		smtpHost = a.IMAPHost
	}
	const oauth2, sslTLS = 10, 3 // nsMsgAuthMethod.OAuth2, nsMsgSocketType.SSL
	return map[string]any{
		"mail.accountmanager.accounts":           "account1,account2",
		"mail.accountmanager.defaultaccount":     "account1",
		"mail.accountmanager.localfoldersserver": "server2",
		"mail.account.lastKey":                   2,
		"mail.account.account1.server":           "server1",
		"mail.account.account1.identities":       "id1",
		"mail.account.account2.server":           "server2",

		"mail.server.server1.type":                    "imap",
		"mail.server.server1.name":                    a.Email,
		"mail.server.server1.hostname":                a.IMAPHost,
		"mail.server.server1.port":                    a.IMAPPort,
		"mail.server.server1.socketType":              sslTLS,
		"mail.server.server1.authMethod":              oauth2,
		"mail.server.server1.userName":                a.Email,
		"mail.server.server1.login_at_startup":        true,
		"mail.server.server1.check_new_mail":          true,
		"mail.server.server1.check_time":              1,
		"mail.server.server1.autosync_offline_stores": false,
		"mail.server.server1.offline_download":        false,

		"mail.server.server2.type":     "none",
		"mail.server.server2.name":     "Local Folders",
		"mail.server.server2.hostname": "Local Folders",
		"mail.server.server2.userName": "nobody",

		"mail.identity.id1.useremail":  a.Email,
		"mail.identity.id1.fullName":   name,
		"mail.identity.id1.smtpServer": "smtp1",
		"mail.identity.id1.valid":      true,
		"mail.identity.id1.fcc":        a.SaveSent,
		// What the account wizard sets: Sent on the IMAP server.
		"mail.identity.id1.fcc_folder":             "imap://" + url.QueryEscape(a.Email) + "@" + a.IMAPHost + "/Sent",
		"mail.identity.id1.fcc_folder_picker_mode": "0",

		"mail.smtpservers":                  "smtp1",
		"mail.smtp.defaultserver":           "smtp1",
		"mail.smtpserver.smtp1.type":        "smtp",
		"mail.smtpserver.smtp1.description": "mailgate",
		"mail.smtpserver.smtp1.hostname":    smtpHost,
		"mail.smtpserver.smtp1.port":        a.SMTPPort,
		"mail.smtpserver.smtp1.try_ssl":     sslTLS,
		"mail.smtpserver.smtp1.authMethod":  oauth2,
		"mail.smtpserver.smtp1.username":    a.Email,
	}
}

// formatPrefs renders prefs as user.js, sorted by name.
func formatPrefs(prefs map[string]any) ([]byte, error) {
	names := make([]string, 0, len(prefs))
	for k := range prefs {
		names = append(names, k)
	}
	sort.Strings(names)
	var b bytes.Buffer
	b.WriteString("// generated by mailgate internal/testenv\n")
	for _, k := range names {
		switch prefs[k].(type) {
		case string, bool, int:
		default:
			return nil, fmt.Errorf("pref %s: %T is not a string, bool or int", k, prefs[k])
		}
		name, _ := json.Marshal(k)
		v, _ := json.Marshal(prefs[k])
		fmt.Fprintf(&b, "user_pref(%s, %s);\n", name, v)
	}
	return b.Bytes(), nil
}

// XPI zips files (path in the add-on -> contents) into an .xpi, in a fixed
// order.
func XPI(files map[string][]byte) ([]byte, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	var b bytes.Buffer
	zw := zip.NewWriter(&b)
	for _, n := range names {
		w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: zip.Deflate, Modified: time.Unix(1, 0)})
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(files[n]); err != nil {
			return nil, err
		}
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// AddonManifest reads manifest.json of an .xpi.
func AddonManifest(xpi []byte) (map[string]any, error) {
	zr, err := zip.NewReader(bytes.NewReader(xpi), int64(len(xpi)))
	if err != nil {
		return nil, fmt.Errorf("xpi: %w", err)
	}
	f, err := zr.Open("manifest.json")
	if err != nil {
		return nil, fmt.Errorf("xpi: %w", err)
	}
	defer f.Close()
	var m map[string]any
	if err := json.NewDecoder(f).Decode(&m); err != nil {
		return nil, fmt.Errorf("xpi: manifest.json: %w", err)
	}
	return m, nil
}

// AddonID is the gecko id in an add-on manifest
// (browser_specific_settings.gecko.id, or applications.gecko.id).
func AddonID(manifest map[string]any) string {
	for _, k := range []string{"browser_specific_settings", "applications"} {
		bss, _ := manifest[k].(map[string]any)
		gecko, _ := bss["gecko"].(map[string]any)
		if id := str(gecko["id"]); id != "" {
			return id
		}
	}
	return ""
}

// outputNoise matches Thunderbird output lines that never explain a
// failure here: no D-Bus session or accessibility bus, remote settings and
// region lookups that have nowhere to go, GLib chatter.
var outputNoise = regexp.MustCompile(`DBus|dbus|org\.a11y|glib warning|services\.settings|services-settings|Remote Settings|` +
	`Unexpected content-type|Region\.sys\.mjs|Glean|^\s*(Message:|Stack:)?\s*$`)

// Output returns Thunderbird's output of the current or last start without
// the lines outputNoise matches.
func (t *Thunderbird) Output() string {
	var keep []string
	for _, l := range strings.Split(t.Log.String(), "\n") {
		if !outputNoise.MatchString(l) {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
