package discovery

import (
	"bytes"
	"encoding/xml"
	"errors"
	"strings"
)

// Thunderbird autoconfig: clientConfig version 1.1
// (https://wiki.mozilla.org/Thunderbird:Autoconfiguration:ConfigFileFormat),
// plus the <oAuth2> element (issuer, scope, authURL, tokenURL, clientID) of
// draft-ietf-mailmaint-autoconfig, a child of clientConfig as there and in
// automx 3. Thunderbird itself knows only built-in providers; the
// xoauth-thunderbird add-on reads this block (wherever it sits, tag names
// case-insensitive) to register the provider. Readers ignore what they do
// not know, so the block costs the others nothing.
//
// ManageSieve is left out: clientConfig 1.1 has no element for it (the
// incomingServer types are imap and pop3, the outgoing one smtp), and
// Thunderbird's readers drop unknown server types. Sieve clients find the
// server through the RFC 5804 SRV record instead (see [DNSRecords]).

// Paths Thunderbird fetches: http://autoconfig.<domain>/mail/config-v1.1.xml
// and https://<domain>/.well-known/autoconfig/mail/config-v1.1.xml.
const (
	autoconfigPath          = "/mail/config-v1.1.xml"
	autoconfigWellKnownPath = "/.well-known/autoconfig/mail/config-v1.1.xml"
)

// Authentication values of clientConfig.
const (
	authOAuth2   = "OAuth2"
	authPassword = "password-cleartext" // sent as is, over TLS: PLAIN or LOGIN
)

// usernameAddress is Thunderbird's placeholder for the address the user typed.
const usernameAddress = "%EMAILADDRESS%"

type acClientConfig struct {
	XMLName  xml.Name        `xml:"clientConfig"`
	Version  string          `xml:"version,attr"`
	Provider acEmailProvider `xml:"emailProvider"`
	OAuth2   *acOAuth2       `xml:"oAuth2,omitempty"`
}

type acEmailProvider struct {
	ID          string     `xml:"id,attr"`
	Domains     []string   `xml:"domain"`
	DisplayName string     `xml:"displayName"`
	Incoming    []acServer `xml:"incomingServer"`
	Outgoing    []acServer `xml:"outgoingServer"`
}

type acServer struct {
	Type           string   `xml:"type,attr"`
	Hostname       string   `xml:"hostname"`
	Port           int      `xml:"port"`
	SocketType     string   `xml:"socketType"`
	Username       string   `xml:"username"`
	Authentication []string `xml:"authentication"`
}

// acOAuth2 is the provider block: element names as draft-ietf-mailmaint-
// autoconfig and the xoauth-thunderbird add-on spell them (the add-on
// matches them case-insensitively, so clientID is also its clientId).
type acOAuth2 struct {
	Issuer   string `xml:"issuer"`
	Scope    string `xml:"scope,omitempty"`
	AuthURL  string `xml:"authURL,omitempty"`
	TokenURL string `xml:"tokenURL,omitempty"`
	ClientID string `xml:"clientID,omitempty"`
}

// autoconfigDocument is the clientConfig for domain (one of site.Domains).
// A server that offers no method a document can name (no OAuth published,
// no passwords) is left out.
func autoconfigDocument(site Site, domain string) ([]byte, error) {
	doc := acClientConfig{
		Version: "1.1",
		Provider: acEmailProvider{
			ID:          domain,
			Domains:     []string{domain}, // not the other tenants
			DisplayName: site.displayName(),
		},
		OAuth2: acOAuth(site.OAuth),
	}
	for _, s := range site.Servers {
		sv, ok := acServerOf(s, site.OAuth != nil)
		switch {
		case !ok:
		case s.Protocol == SMTP:
			doc.Provider.Outgoing = append(doc.Provider.Outgoing, sv)
		default:
			doc.Provider.Incoming = append(doc.Provider.Incoming, sv)
		}
	}
	if len(doc.Provider.Incoming) == 0 {
		return nil, errNoAutoconfigServer
	}
	return marshalXML(doc)
}

// errNoAutoconfigServer: no IMAP or POP3 server with a method a client
// could use; an empty document would only make clients guess.
var errNoAutoconfigServer = errors.New("no autoconfig document: no IMAP or POP3 server offers OAuth or passwords")

// acServerOf describes s; false for ManageSieve and for a server with no
// method to name.
func acServerOf(s Server, oauth bool) (acServer, bool) {
	if s.Protocol != IMAP && s.Protocol != POP3 && s.Protocol != SMTP {
		return acServer{}, false
	}
	sv := acServer{
		Type:       string(s.Protocol),
		Hostname:   s.Host,
		Port:       s.Port,
		SocketType: "STARTTLS",
		Username:   usernameAddress,
	}
	if s.Security == ImplicitTLS {
		sv.SocketType = "SSL"
	}
	if oauth {
		sv.Authentication = append(sv.Authentication, authOAuth2)
	}
	if s.Passwords {
		sv.Authentication = append(sv.Authentication, authPassword)
	}
	return sv, len(sv.Authentication) > 0
}

func acOAuth(o *OAuth) *acOAuth2 {
	if o == nil {
		return nil
	}
	return &acOAuth2{
		Issuer:   o.Issuer,
		Scope:    strings.Join(o.Scopes, " "),
		AuthURL:  o.AuthURL,
		TokenURL: o.TokenURL,
		ClientID: o.ClientID,
	}
}

// marshalXML encodes v, indented, after the XML declaration.
func marshalXML(v any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(xml.Header)
	enc := xml.NewEncoder(&b)
	enc.Indent("", "  ")
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}
