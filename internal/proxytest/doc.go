// Package proxytest is the test support shared by the proxy packages
// (proxy, proxy/imap, proxy/smtp, proxy/pop3, proxy/sieve): a TLS pair, a
// fake authenticator and the tokens it knows, scripted client connections
// (IMAP and SMTP helpers; the POP3 and ManageSieve line clients wrap Conn),
// the listeners of a test front, fake IMAP and SMTP backends, stub
// backends, a secret-scanning log sink and leak checks. It is for tests
// only and imports no proxy package, so that package proxy's own tests can
// use it too.
package proxytest
