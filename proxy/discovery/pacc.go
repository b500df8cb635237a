package discovery

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
)

// PACC: "Automatic Configuration of Email, Calendar, and Contact Server
// Settings", draft-ietf-mailmaint-pacc-03 (the JSON format as automx 3
// implements it; -04 is published, but its text could not be read here, so
// check it before relying on this). A client for fred@example.com:
//
//  1. GETs https://ua-auto-config.example.com/.well-known/user-agent-configuration.json,
//  2. looks up TXT _ua-auto-config.example.com, "v=UAAC1; a=sha256; d=<base64
//     SHA-256 of the body>", and uses the body only if a digest matches its
//     exact bytes,
//  3. connects with the address as user name, to the protocols' direct-TLS
//     ports only (imap 993, pop3 995, submit 465): PACC carries host names,
//     no ports and no STARTTLS.
//
// The document:
//
//	{"protocols":{"imap":{"host":"mail.example.com"},"submit":{"host":"mail.example.com"}},
//	 "authentication":{"oauth-public":{"issuer":"https://id.example.com"},"password":true},
//	 "info":{"provider":{"name":"Example Mail"}}}
//
// oauth-public names the OIDC issuer; the client reads its RFC 8414 metadata
// and registers itself (draft-ietf-mailmaint-oauth-public), so the client ID
// of [OAuth] is not published here. ManageSieve is left out: the draft gives
// it no direct-TLS port, and mailgate serves it with STARTTLS on 4190.
//
// The document does not depend on the domain: every domain of a site
// publishes the same bytes and the same digest. Changing the site (servers,
// OAuth, display name) changes the digest, so the TXT records must follow.

// Paths of the document: the draft's, and the same without ".json".
const (
	paccPath      = "/.well-known/user-agent-configuration.json"
	paccPathShort = "/.well-known/user-agent-configuration"
)

// paccHostPrefix is the host label clients fetch the document from, and
// paccTXTLabel the one of the digest record.
const (
	paccHostPrefix = "ua-auto-config."
	paccTXTLabel   = "_ua-auto-config."
)

// paccMaxName: the draft caps info.provider.name at 60 characters.
const paccMaxName = 60

// paccPorts are the direct-TLS ports the draft implies for each protocol it
// names by host only, and the protocol's key in the document.
var paccPorts = map[Protocol]struct {
	key  string
	port int
}{IMAP: {"imap", 993}, POP3: {"pop3", 995}, SMTP: {"submit", 465}}

type paccDoc struct {
	Protocols      map[string]paccHost `json:"protocols"`
	Authentication paccAuth            `json:"authentication"`
	Info           paccInfo            `json:"info"`
}

type paccHost struct {
	Host string `json:"host"`
}

type paccAuth struct {
	OAuthPublic *paccIssuer `json:"oauth-public,omitempty"`
	Password    bool        `json:"password"`
}

type paccIssuer struct {
	Issuer string `json:"issuer"`
}

type paccInfo struct {
	Provider paccProvider `json:"provider"`
}

type paccProvider struct {
	Name string `json:"name"`
}

// errNoPACCServer: no server on a direct-TLS port, so there is no document.
var errNoPACCServer = errors.New("no PACC document: it needs an IMAP, POP3 or SMTP server with implicit TLS on 993, 995 or 465")

// paccDocument is the document of site (compact JSON, keys in a fixed
// order; maps are sorted by encoding/json). Servers that no method can log
// in to (no OAuth published, no password) are left out.
func paccDocument(site Site) ([]byte, error) {
	doc := paccDoc{Protocols: map[string]paccHost{}}
	for _, s := range site.Servers {
		p, ok := paccPorts[s.Protocol]
		usable := site.OAuth != nil || s.Passwords
		if !ok || s.Security != ImplicitTLS || s.Port != p.port || !usable {
			continue
		}
		if _, dup := doc.Protocols[p.key]; !dup {
			doc.Protocols[p.key] = paccHost{Host: s.Host}
		}
		doc.Authentication.Password = doc.Authentication.Password || s.Passwords
	}
	if len(doc.Protocols) == 0 {
		return nil, errNoPACCServer
	}
	if site.OAuth != nil {
		doc.Authentication.OAuthPublic = &paccIssuer{Issuer: site.OAuth.Issuer}
	}
	doc.Info.Provider.Name = truncateRunes(site.displayName(), paccMaxName)
	return json.Marshal(doc)
}

// paccDigestRecord is the TXT record data that vouches for body.
func paccDigestRecord(body []byte) string {
	sum := sha256.Sum256(body)
	return "v=UAAC1; a=sha256; d=" + base64.StdEncoding.EncodeToString(sum[:])
}

func truncateRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}
