// Package proxytest is the test support shared by the proxy packages
// (proxy, proxy/imap, proxy/smtp): a TLS pair, a fake authenticator and the
// tokens it knows, scripted client connections (IMAP and SMTP helpers), fake
// IMAP and SMTP backends, stub backends, a secret-scanning log sink and leak
// checks. It is for tests only and imports no proxy package, so that
// package proxy's own tests can use it too.
package proxytest
