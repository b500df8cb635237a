package tbaddon

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// The Thunderbird releases that introduced the oauth_provider keys used
// here (from the history of oauth_provider.json in comm-central).
const (
	tbOAuthProvider   = 140 // oauth_provider itself
	tbExternalBrowser = 153 // useExternalBrowser
	tbIssuerID        = 153 // issuerIdentifier
	tbEmailDomains    = 155 // emailDomains
)

var versionRE = regexp.MustCompile(`^[0-9]{1,4}(\.[0-9]{1,4}){0,2}$`)

// minVersion returns opts.MinVersion or its default, and its major number.
func minVersion(opts Options) (string, int, error) {
	v := opts.MinVersion
	if v == "" {
		v = DefaultMinVersion
	}
	if !versionRE.MatchString(v) {
		return "", 0, fmt.Errorf("%w: MinVersion %q is not a Thunderbird version like 140.0", ErrInvalid, v)
	}
	major, _ := strconv.Atoi(strings.Split(v, ".")[0])
	if major < tbOAuthProvider {
		return "", 0, fmt.Errorf("%w: oauth_provider needs Thunderbird %d, MinVersion is %s", ErrTooOld, tbOAuthProvider, v)
	}
	return v, major, nil
}

// checkFeatures reports the first feature opts ask for that Thunderbird
// major lacks.
func checkFeatures(opts Options, major int) error {
	for _, f := range []struct {
		on   bool
		what string
		need int
	}{
		{opts.Redirect == ExternalBrowser, "Redirect ExternalBrowser (useExternalBrowser)", tbExternalBrowser},
		{opts.IssuerIdentifier, "IssuerIdentifier (issuerIdentifier)", tbIssuerID},
		{opts.EmailDomains, "EmailDomains (emailDomains)", tbEmailDomains},
	} {
		if f.on && major < f.need {
			return fmt.Errorf("%w: %s needs Thunderbird %d, MinVersion is %d", ErrTooOld, f.what, f.need, major)
		}
	}
	return nil
}
