package discovery

import (
	"encoding/xml"
	"errors"
)

// Outlook Autodiscover, the "POX" form ([MS-OXDSCLI]): Outlook POSTs a
// request naming the address to https://autodiscover.<domain>/autodiscover/
// autodiscover.xml (or the host of the _autodiscover._tcp SRV record) and
// reads IMAP/POP3/SMTP settings from the responseschema/2006a document. The
// shape follows what automx2 and automx emit.
//
// The settings carry no OAuth: Outlook logs in to IMAP and SMTP servers with
// a password, so only servers that accept one are listed.

// Paths Outlook uses; matched ignoring case (it sends both spellings).
const autodiscoverPath = "/autodiscover/autodiscover.xml"

type adResponseDoc struct {
	XMLName  xml.Name   `xml:"http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006 Autodiscover"`
	Response adResponse `xml:"http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a Response"`
}

type adResponse struct {
	Account *adAccount `xml:"Account,omitempty"`
	Error   *adError   `xml:"Error,omitempty"`
}

type adAccount struct {
	AccountType string       `xml:"AccountType"`
	Action      string       `xml:"Action"`
	Protocols   []adProtocol `xml:"Protocol"`
}

// adProtocol is one server. Encryption overrides SSL for clients that know
// it (Outlook 2010 and later); SSL stays for older ones.
type adProtocol struct {
	Type           string `xml:"Type"`
	Server         string `xml:"Server"`
	Port           int    `xml:"Port"`
	DomainRequired string `xml:"DomainRequired"`
	LoginName      string `xml:"LoginName"`
	SPA            string `xml:"SPA"`
	SSL            string `xml:"SSL"`
	Encryption     string `xml:"Encryption"`
	AuthRequired   string `xml:"AuthRequired"`
}

// adError is the protocol's error element; Time and Id are fixed so that no
// request data or server state appears in it.
type adError struct {
	Time      string `xml:"Time,attr"`
	ID        string `xml:"Id,attr"`
	ErrorCode int    `xml:"ErrorCode"`
	Message   string `xml:"Message"`
	DebugData string `xml:"DebugData"`
}

// adTypes maps the protocols Outlook knows to its Type values.
var adTypes = map[Protocol]string{IMAP: "IMAP", POP3: "POP3", SMTP: "SMTP"}

// errNoPasswordServer: no server of the site accepts a password, so Outlook
// has nothing it can use.
var errNoPasswordServer = errors.New("discovery: no server accepts a password")

// autodiscoverDocument lists, for a, every IMAP, POP3 and SMTP server that
// accepts a password, in the site's order.
func autodiscoverDocument(site Site, a address) ([]byte, error) {
	acct := &adAccount{AccountType: "email", Action: "settings"}
	for _, s := range site.Servers {
		typ, ok := adTypes[s.Protocol]
		if !ok || !s.Passwords {
			continue
		}
		p := adProtocol{Type: typ, Server: s.Host, Port: s.Port, DomainRequired: "off",
			LoginName: a.String(), SPA: "off", SSL: "off", Encryption: "TLS", AuthRequired: "on"}
		if s.Security == ImplicitTLS {
			p.SSL, p.Encryption = "on", "SSL"
		}
		acct.Protocols = append(acct.Protocols, p)
	}
	if len(acct.Protocols) == 0 {
		return nil, errNoPasswordServer
	}
	return marshalXML(adResponseDoc{Response: adResponse{Account: acct}})
}

// Autodiscover error codes ([MS-OXDSCLI] 2.2.4.2.1.2.1).
const (
	adInvalidRequest      = 600
	adProviderUnavailable = 601
)

// The error documents, built once: their text is fixed, so no request data
// reaches them.
var (
	adInvalidRequestDoc      = autodiscoverError(adInvalidRequest, "Invalid Request")
	adProviderUnavailableDoc = autodiscoverError(adProviderUnavailable, "Provider Not Available")
)

// autodiscoverError is the error document for code; it panics if the fixed
// document cannot be encoded, which only a programming error can cause.
func autodiscoverError(code int, message string) []byte {
	doc := adResponseDoc{Response: adResponse{Error: &adError{
		Time: "00:00:00.0000000", ID: "0", ErrorCode: code, Message: message}}}
	b, err := marshalXML(doc)
	if err != nil {
		panic(err)
	}
	return b
}
