package discovery

import (
	"crypto/sha1"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// An Apple configuration profile (macOS, iOS, iPadOS): a Configuration
// payload holding one com.apple.mail.managed payload for a password
// account. Apple's Mail payload has no OAuth settings for an arbitrary
// provider, so the profile exists only when an IMAP (else POP3) server and
// an SMTP server accept passwords.
//
// The profile is unsigned: the device shows it as "Not Verified" before the
// user installs it. It carries no password; the device asks for it.
//
// Its identifiers are derived from the domain and the address, so a second
// download of the same account replaces the installed profile instead of
// adding another.

// mobileconfigPath is the one path the profile is served at, with
// ?emailaddress=.
const mobileconfigPath = "/mail/mailgate.mobileconfig"

// errNoPasswordAccount is why there is no profile; its text is what the
// client reads.
var errNoPasswordAccount = errors.New("no Apple profile: it needs an IMAP or POP3 server and an SMTP server that accept passwords")

// mobileconfigDocument is the profile for a.
func mobileconfigDocument(site Site, a address) ([]byte, error) {
	in, ok := passwordServer(site, IMAP)
	if !ok {
		in, ok = passwordServer(site, POP3)
	}
	out, okOut := passwordServer(site, SMTP)
	if !ok || !okOut {
		return nil, errNoPasswordAccount
	}
	ident := reverseDNS(a.Domain) + ".mailgate." + profileUUID(a, "profile")
	mail := mailPayload(site, a, in, out)
	mail = append(mail,
		plistEntry{"PayloadIdentifier", ident + ".mail"},
		plistEntry{"PayloadUUID", profileUUID(a, "mail")})
	return marshalPlist(plistDict{
		{"PayloadContent", []plistDict{mail}},
		{"PayloadDescription", "Mail account " + a.String()},
		{"PayloadDisplayName", site.displayName() + " mail"},
		{"PayloadIdentifier", ident},
		{"PayloadOrganization", site.displayName()},
		{"PayloadRemovalDisallowed", false},
		{"PayloadType", "Configuration"},
		{"PayloadUUID", profileUUID(a, "profile")},
		{"PayloadVersion", 1},
	})
}

// mailPayload is the com.apple.mail.managed payload without its identifiers.
// UseSSL is true for STARTTLS servers too, as automx2 writes it: the device
// takes the flag as "use TLS" and, on a STARTTLS port, upgrades. Implicit
// TLS servers are preferred anyway (see passwordServer).
func mailPayload(site Site, a address, in, out Server) plistDict {
	typ := "EmailTypeIMAP"
	if in.Protocol == POP3 {
		typ = "EmailTypePOP"
	}
	return plistDict{
		{"EmailAccountDescription", site.displayName()},
		{"EmailAccountType", typ},
		{"EmailAddress", a.String()},
		{"IncomingMailServerAuthentication", "EmailAuthPassword"},
		{"IncomingMailServerHostName", in.Host},
		{"IncomingMailServerPortNumber", in.Port},
		{"IncomingMailServerUseSSL", true},
		{"IncomingMailServerUsername", a.String()},
		{"OutgoingMailServerAuthentication", "EmailAuthPassword"},
		{"OutgoingMailServerHostName", out.Host},
		{"OutgoingMailServerPortNumber", out.Port},
		{"OutgoingMailServerUseSSL", true},
		{"OutgoingMailServerUsername", a.String()},
		{"OutgoingPasswordSameAsIncomingPassword", true},
		{"PayloadDescription", "Mail account " + a.String()},
		{"PayloadDisplayName", site.displayName() + " mail"},
		{"PayloadType", "com.apple.mail.managed"},
		{"PayloadVersion", 1},
	}
}

// passwordServer is the first server of p that accepts passwords, implicit
// TLS before STARTTLS whatever the site's order.
func passwordServer(site Site, p Protocol) (Server, bool) {
	var found []Server
	for _, s := range site.Servers {
		if s.Protocol == p && s.Passwords {
			found = append(found, s)
		}
	}
	if len(found) == 0 {
		return Server{}, false
	}
	slices.SortStableFunc(found, func(x, y Server) int {
		return boolInt(x.Security != ImplicitTLS) - boolInt(y.Security != ImplicitTLS)
	})
	return found[0], true
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// reverseDNS turns example.com into com.example.
func reverseDNS(domain string) string {
	labels := strings.Split(domain, ".")
	slices.Reverse(labels)
	return strings.Join(labels, ".")
}

// profileNamespace is the UUID namespace of profile identifiers: the
// RFC 9562 name-based UUID of "mailgate.discovery.mobileconfig" in the DNS
// namespace.
var profileNamespace = uuid5([16]byte{0x6b, 0xa7, 0xb8, 0x10, 0x9d, 0xad, 0x11, 0xd1, 0x80, 0xb4, 0x00, 0xc0, 0x4f, 0xd4, 0x30, 0xc8},
	"mailgate.discovery.mobileconfig")

// profileUUID names role ("profile", "mail") of a's profile: the same
// account always gets the same UUIDs. The address compares without case.
func profileUUID(a address, role string) string {
	u := uuid5(profileNamespace, a.Domain+"\x00"+strings.ToLower(a.String())+"\x00"+role)
	return fmt.Sprintf("%X-%X-%X-%X-%X", u[0:4], u[4:6], u[6:8], u[8:10], u[10:16])
}

// uuid5 is RFC 9562's version 5 (SHA-1, name-based) UUID of name in ns.
func uuid5(ns [16]byte, name string) [16]byte {
	h := sha1.New()
	h.Write(ns[:])
	h.Write([]byte(name))
	var u [16]byte
	copy(u[:], h.Sum(nil))
	u[6] = u[6]&0x0f | 0x50
	u[8] = u[8]&0x3f | 0x80
	return u
}
