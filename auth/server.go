package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// ChallengeOptions fills the JSON error challenge sent when a token is refused.
type ChallengeOptions struct {
	// OpenIDConfiguration is the provider's discovery URL, sent as
	// "openid-configuration" in OAUTHBEARER challenges. Empty: omitted.
	OpenIDConfiguration string
	// Scope is the scope the client should request. Empty: omitted.
	Scope string
	// XOAUTH2Status is the "status" of the XOAUTH2 error challenge:
	// XOAUTH2Status400 (also when empty) or XOAUTH2Status401. Google sends
	// "400", and K-9 Mail / Thunderbird for Android fetch a fresh token and
	// retry only on "400"; they take "401" as a permanent failure.
	XOAUTH2Status string
}

// Values of ChallengeOptions.XOAUTH2Status.
const (
	XOAUTH2Status400 = "400"
	XOAUTH2Status401 = "401"
)

// Check refuses an XOAUTH2Status other than "", "400" and "401".
func (o ChallengeOptions) Check() error {
	switch o.XOAUTH2Status {
	case "", XOAUTH2Status400, XOAUTH2Status401:
		return nil
	}
	return fmt.Errorf("auth: XOAUTH2 error status %q: want %q or %q", o.XOAUTH2Status, XOAUTH2Status400, XOAUTH2Status401)
}

// xoauth2Status is o.XOAUTH2Status with its default.
func (o ChallengeOptions) xoauth2Status() string {
	if o.XOAUTH2Status == "" {
		return XOAUTH2Status400
	}
	return o.XOAUTH2Status
}

// errExchangeDone is returned when Next is called after the exchange ended.
var errExchangeDone = errors.New("auth: SASL exchange already finished")

type serverState int

const (
	stateStart       serverState = iota // nothing received yet
	stateWaitInitial                    // empty challenge sent, waiting for the response
	stateWaitDummy                      // error challenge sent, waiting for the client's dummy reply
	stateDone
)

// Server is a SASL server for XOAUTH2 and OAUTHBEARER. It implements
// github.com/emersion/go-sasl's Server interface, so go-smtp can use it
// directly, and IMAP code can drive it the same way.
//
// Responses are the raw, base64-decoded bytes: framing ("=" meaning empty,
// "*" meaning cancel) is the caller's job. A Server is used for one exchange
// by one goroutine.
type Server struct {
	ctx        context.Context
	mech       string
	auth       Authenticator
	remoteAddr string
	opts       ChallengeOptions

	state   serverState
	failErr error // refusal held back until the client's dummy reply
	id      Identity
	ok      bool
}

// NewServer returns a Server for mech ("XOAUTH2" or "OAUTHBEARER",
// case-insensitive) that checks credentials with a. ctx bounds the
// Authenticate call; remoteAddr is passed on in Credentials.
func NewServer(ctx context.Context, mech string, a Authenticator, remoteAddr string, opts ChallengeOptions) (*Server, error) {
	mech = strings.ToUpper(mech)
	if mech != MechXOAUTH2 && mech != MechOAUTHBEARER {
		return nil, fmt.Errorf("auth: unsupported SASL mechanism %q", mech)
	}
	if ctx == nil || a == nil {
		return nil, errors.New("auth: NewServer needs a context and an Authenticator")
	}
	return &Server{ctx: ctx, mech: mech, auth: a, remoteAddr: remoteAddr, opts: opts}, nil
}

// Next handles one client response and returns the next challenge.
//
//   - nil as the first response means "no initial response": Next returns an
//     empty challenge.
//   - A malformed message ends the exchange with an error wrapping ErrMalformed.
//   - Success ends the exchange with a nil error; see Identity.
//   - An error wrapping ErrUnavailable ends the exchange at once.
//   - An error wrapping ErrInvalidCredentials or ErrThrottled yields the
//     mechanism's JSON error challenge; the next response (the client's
//     dummy "\x01" or empty reply, or anything else) ends the exchange with
//     that error.
//   - Any other Authenticator error ends the exchange unchanged.
//
// Calling Next after the exchange ended returns an error.
func (s *Server) Next(response []byte) (challenge []byte, done bool, err error) {
	switch s.state {
	case stateStart:
		if response == nil {
			s.state = stateWaitInitial
			return []byte{}, false, nil
		}
	case stateWaitInitial:
	case stateWaitDummy:
		s.state = stateDone
		return nil, true, s.failErr
	default:
		return nil, true, errExchangeDone
	}
	s.state = stateDone
	return s.authenticate(response)
}

func (s *Server) authenticate(msg []byte) ([]byte, bool, error) {
	c := Credentials{Mechanism: s.mech, RemoteAddr: s.remoteAddr}
	var err error
	if s.mech == MechXOAUTH2 {
		c.User, c.Token, err = DecodeXOAUTH2(msg)
	} else {
		c.User, c.Token, err = DecodeOAUTHBEARER(msg)
	}
	if err != nil {
		return nil, true, err
	}
	id, err := s.auth.Authenticate(s.ctx, c)
	switch {
	case err == nil:
		if id.User == "" {
			return nil, true, errors.New("auth: authenticator returned an empty identity")
		}
		if id.Mechanism == "" {
			id.Mechanism = s.mech
		}
		s.id, s.ok = id, true
		return nil, true, nil
	case errors.Is(err, ErrUnavailable):
		return nil, true, err
	case errors.Is(err, ErrInvalidCredentials), errors.Is(err, ErrThrottled):
		s.state, s.failErr = stateWaitDummy, err
		return s.challenge(), false, nil
	default:
		return nil, true, err
	}
}

// challenge is the error challenge of RFC 7628 §3.2.2 (OAUTHBEARER) or
// Google's XOAUTH2 protocol.
func (s *Server) challenge() []byte {
	var v any
	if s.mech == MechXOAUTH2 {
		v = struct {
			Status  string `json:"status"`
			Schemes string `json:"schemes"`
			Scope   string `json:"scope,omitempty"`
		}{s.opts.xoauth2Status(), "bearer", s.opts.Scope}
	} else {
		v = struct {
			Status              string `json:"status"`
			Scope               string `json:"scope,omitempty"`
			OpenIDConfiguration string `json:"openid-configuration,omitempty"`
		}{"invalid_token", s.opts.Scope, s.opts.OpenIDConfiguration}
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // cannot fail for string fields
	return bytes.TrimSuffix(b.Bytes(), []byte("\n"))
}

// Identity returns the authenticated identity and true once Next has
// succeeded, otherwise the zero Identity and false.
func (s *Server) Identity() (Identity, bool) {
	return s.id, s.ok
}

// AwaitingDummy reports whether the exchange waits for the client's dummy
// reply to an error challenge: callers bound that wait, since some clients
// never send it.
func (s *Server) AwaitingDummy() bool { return s.state == stateWaitDummy }
