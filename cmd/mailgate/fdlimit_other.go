//go:build !unix

package main

import "errors"

// raiseOpenFiles is not supported here; 0 means the limit is unknown and the
// connection caps are used as configured.
func raiseOpenFiles() (uint64, error) { return 0, errors.ErrUnsupported }

// hardOpenFiles returns 0: unknown.
func hardOpenFiles() uint64 { return 0 }
