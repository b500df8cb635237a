package discovery

import (
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// Namespaces of the Outlook Autodiscover POX exchange ([MS-OXDSCLI]).
const (
	nsRequest        = "http://schemas.microsoft.com/exchange/autodiscover/outlook/requestschema/2006"
	nsResponse       = "http://schemas.microsoft.com/exchange/autodiscover/responseschema/2006"
	nsOutlookSchema  = "http://schemas.microsoft.com/exchange/autodiscover/outlook/responseschema/2006a"
	nsMobileRequest  = "http://schemas.microsoft.com/exchange/autodiscover/mobilesync/requestschema/2006"
	maxAutodiscoverB = 64 << 10 // request body cap
)

// Why an Autodiscover request is refused. Their text goes to the log only;
// clients get a fixed reply (see autodiscoverRefusal).
var (
	// errRequestTooLarge: the body is over maxAutodiscoverB.
	errRequestTooLarge = errors.New("discovery: autodiscover request over 64 KiB")
	// errMalformedRequest: not the Outlook request document (bad XML, wrong
	// root or namespace, no EMailAddress), or the body could not be read.
	errMalformedRequest = errors.New("discovery: malformed autodiscover request")
	// errUnsupportedSchema: a well-formed request for a response schema other
	// than Outlook's 2006a (ActiveSync's mobilesync, for one).
	errUnsupportedSchema = errors.New("discovery: autodiscover response schema not offered")
)

// adRequest is the request document; fields without a namespace accept any.
type adRequest struct {
	XMLName xml.Name `xml:"Autodiscover"`
	Request struct {
		EMailAddress             string `xml:"EMailAddress"`
		AcceptableResponseSchema string `xml:"AcceptableResponseSchema"`
	} `xml:"Request"`
}

// parseAutodiscoverRequest reads an Outlook request (at most
// maxAutodiscoverB bytes of r) and returns its EMailAddress, trimmed but not
// yet validated. Errors wrap errRequestTooLarge, errMalformedRequest or
// errUnsupportedSchema.
func parseAutodiscoverRequest(r io.Reader) (string, error) {
	body, err := io.ReadAll(io.LimitReader(r, maxAutodiscoverB+1))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return "", errRequestTooLarge
	case err != nil:
		return "", fmt.Errorf("%w: %w", errMalformedRequest, err)
	}
	if len(body) > maxAutodiscoverB {
		return "", errRequestTooLarge
	}
	var req adRequest
	dec := xml.NewDecoder(bytes.NewReader(body)) // Strict: no entities beyond XML's five
	if err := dec.Decode(&req); err != nil {
		return "", fmt.Errorf("%w: %w", errMalformedRequest, err)
	}
	switch req.XMLName.Space {
	case nsRequest:
	case nsMobileRequest:
		return "", errUnsupportedSchema
	default:
		return "", fmt.Errorf("%w: root element not in the Outlook request namespace", errMalformedRequest)
	}
	if strings.TrimSpace(req.Request.AcceptableResponseSchema) != nsOutlookSchema {
		return "", errUnsupportedSchema
	}
	addr := strings.TrimSpace(req.Request.EMailAddress)
	if addr == "" {
		return "", fmt.Errorf("%w: no EMailAddress", errMalformedRequest)
	}
	return addr, nil
}
