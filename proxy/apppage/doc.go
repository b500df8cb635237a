// Package apppage serves the self-service page of app passwords: a user
// signs in at the OpenID provider (authorization code with PKCE, as a
// confidential client), sees the app passwords of the mailbox the
// provider vouches for, makes one (shown once), and revokes one or all.
//
// The page is server-rendered html/template with plain forms, so it works
// with JavaScript off; a small script only adds "Copy" buttons.
//
// # Sign-in
//
// GET signin stores a sign-in (state, PKCE verifier) in the store, puts the
// state in a short-lived cookie and redirects to the provider. GET callback
// accepts it once: the state of the URL must be the cookie's and the
// store's (so a sign-in started in another browser, or replayed, fails),
// iss must be the issuer when the provider sends it (RFC 9207), and the
// code is exchanged with the verifier. Anyone may start a sign-in, so
// sign-ins are limited in all and per client network (429 beyond; see
// limit.go): pending sign-ins stay bounded and one client cannot take
// them all. The access token then goes through
// the same Authenticator as an OAuth mail login (issuer, audience,
// username claim, allowed domains, required scopes): the page never trusts
// a claim the mail path would not. The provider must return a refresh
// token (scope offline_access): it is stored sealed (apppass), so that the
// Revalidator can later ask the provider whether the user still may.
//
// # Sessions
//
// A session is a server-side row (apppass.Store.CreateSession) named by a
// random 256-bit id in an HttpOnly, SameSite=Lax cookie (Secure and
// "__Host-" prefixed when the page is https). Sign-in always makes a new
// id and ends the one the browser had (no session fixation); sign-out
// deletes the row. Sessions last SessionLifetime.
//
// # Requests that change something
//
// Every POST carries the session's CSRF token (a hidden field, compared in
// constant time) and must pass net/http's CrossOriginProtection
// (Sec-Fetch-Site / Origin). Responses carry a strict
// Content-Security-Policy (default-src 'none'; scripts and styles from the
// page itself only; no framing; forms only to the page), no-store caching,
// no referrer, nosniff.
package apppage
