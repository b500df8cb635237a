package tbaddon

import (
	"encoding/json"
	"errors"
	"testing"
)

func TestPoliciesGolden(t *testing.T) {
	want := `{
  "policies": {
    "ExtensionSettings": {
      "mailgate-oauth@example.org": {
        "installation_mode": "force_installed",
        "install_url": "https://mail.example.org/tb/mailgate-oauth-1.0.xpi?a=1&b=2"
      }
    }
  }
}
`
	got, err := Policies(testSite(), Options{InstallURL: "https://mail.example.org/tb/mailgate-oauth-1.0.xpi?a=1&b=2"})
	if err != nil {
		t.Fatalf("Policies() = %v", err)
	}
	if string(got) != want {
		t.Errorf("Policies() =\n%s\nwant\n%s", got, want)
	}
}

func TestPolicies(t *testing.T) {
	for _, tt := range []struct {
		url  string
		opts Options
		want error
	}{
		{url: "https://mail.example.org/mailgate.xpi"},
		{url: "file:///opt/thunderbird/mailgate.xpi"},
		{url: "file:///C:/Program%20Files/mailgate.xpi"},
		{url: "file://fileserver/share/mailgate.xpi"},
		{url: "https://mail.example.org/x.xpi", opts: Options{ID: "{12345678-abcd-4bcd-8bcd-1234567890ab}"}},
		{url: "", want: ErrNoInstallURL},
		{url: "http://mail.example.org/mailgate.xpi", want: ErrInvalid},
		{url: "mailgate.xpi", want: ErrInvalid},
		{url: "https:///mailgate.xpi", want: ErrInvalid},
		{url: "file://", want: ErrInvalid},
		{url: "https://mail.example.org/x.xpi", opts: Options{MinVersion: "1"}, want: ErrTooOld},
	} {
		t.Run(tt.url, func(t *testing.T) {
			opts := tt.opts
			opts.InstallURL = tt.url
			b, err := Policies(testSite(), opts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Policies() = %s, %v; want error %v", b, err, tt.want)
			}
			if err == nil {
				checkPolicies(t, b, opts)
			}
		})
	}
}

func checkPolicies(t *testing.T, b []byte, opts Options) {
	t.Helper()
	var doc map[string]map[string]map[string]map[string]string
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatalf("json.Unmarshal(policies) = %v\n%s", err, b)
	}
	m, _ := decode(t, mustManifest(t, testSite(), opts))
	settings := doc["policies"]["ExtensionSettings"]
	if len(doc) != 1 || len(doc["policies"]) != 1 || len(settings) != 1 {
		t.Fatalf("policies = %s, want one policy for one add-on", b)
	}
	s, ok := settings[m.Settings.Gecko.ID]
	if !ok || len(s) != 2 || s["installation_mode"] != "force_installed" || s["install_url"] != opts.InstallURL {
		t.Errorf("ExtensionSettings = %v, want %s: force_installed from %s", settings, m.Settings.Gecko.ID, opts.InstallURL)
	}
}
