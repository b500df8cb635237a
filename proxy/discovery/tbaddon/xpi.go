package tbaddon

import (
	"archive/zip"
	"fmt"
	"io"
	"time"

	"github.com/mailgate/mailgate/proxy/discovery"
)

// zipTime is every entry's modification time, so that the same input gives
// the same bytes.
var zipTime = time.Date(1980, 1, 1, 0, 0, 0, 0, time.UTC)

// Build writes the add-on (.xpi) for site to w: a zip archive holding only
// manifest.json. The same site and opts give the same bytes.
func Build(w io.Writer, site discovery.Site, opts Options) error {
	m, err := Manifest(site, opts)
	if err != nil {
		return err
	}
	return writeXPI(w, m)
}

// writeXPI stores manifest uncompressed, so the bytes do not depend on the
// Go release's compressor.
func writeXPI(w io.Writer, manifest []byte) error {
	zw := zip.NewWriter(w)
	h := &zip.FileHeader{Name: "manifest.json", Method: zip.Store, Modified: zipTime}
	h.SetMode(0o644)
	f, err := zw.CreateHeader(h)
	if err != nil {
		return fmt.Errorf("tbaddon: xpi: %w", err)
	}
	if _, err := f.Write(manifest); err != nil {
		return fmt.Errorf("tbaddon: xpi: %w", err)
	}
	if err := zw.Close(); err != nil {
		return fmt.Errorf("tbaddon: xpi: %w", err)
	}
	return nil
}
