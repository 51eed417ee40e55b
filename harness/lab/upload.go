package lab

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"

	"github.com/canonical/gomaasclient/entity"
	gomaasapi "github.com/juju/gomaasapi/v2"

	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// UploadOptions change what UploadImageWith declares, to reproduce uploads that go wrong
// (a checksum that does not match, more data than declared) as the region sees them.
type UploadOptions struct {
	// SHA256 is declared instead of the file's own digest when set.
	SHA256 string
	// Size is declared instead of the file's size when positive.
	Size int64
	// Chunk is the upload chunk size; 0 is the maas CLI's 4 MiB.
	Chunk int
	// Architecture is declared instead of amd64/generic when set.
	Architecture string
}

// UploadError is an upload the region refused: the step (create or upload) and the
// region's answer.
type UploadError struct {
	Step   string // "create" or "upload"
	Status int    // HTTP status when known
	Body   string // the region's message
	Err    error
}

func (e *UploadError) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("%s: %d %s", e.Step, e.Status, e.Body)
	}
	return fmt.Sprintf("%s: %v", e.Step, e.Err)
}

func (e *UploadError) Unwrap() error { return e.Err }

// UploadImageWith is UploadImage with declarations changed by o: create the boot resource
// with name, architecture, filetype, sha256 and size, then PUT the file in chunks, as
// `maas boot-resources create ... content@=FILE` does. A refusal is an *UploadError.
func (l *Lab) UploadImageWith(ctx context.Context, name, path, filetype, baseImage string, o UploadOptions) (*entity.BootResource, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h := sha256.New()
	size, err := io.Copy(h, f)
	if err != nil {
		return nil, fmt.Errorf("lab: reading %s: %w", path, err)
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if o.SHA256 != "" {
		sum = o.SHA256
	}
	declared := size
	if o.Size > 0 {
		declared = o.Size
	}
	arch := o.Architecture
	if arch == "" {
		arch = "amd64/generic"
	}
	params := url.Values{"name": {name}, "architecture": {arch}, "filetype": {filetype},
		"sha256": {sum}, "size": {strconv.FormatInt(declared, 10)}}
	if baseImage != "" {
		params.Set("base_image", baseImage)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	br, raw, err := regiontest.CreateBootResourceRaw(l.Client, params)
	if err != nil {
		return nil, asUploadError("create", err)
	}
	uri, complete, err := regiontest.NewestUploadURI(raw)
	if err != nil {
		return nil, &UploadError{Step: "create", Err: err}
	}
	if !complete {
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return nil, err
		}
		chunk := o.Chunk
		if chunk <= 0 {
			chunk = regiontest.ChunkSize
		}
		if err := regiontest.UploadFile(l.Client, uri, &ctxReader{ctx: ctx, r: f}, chunk); err != nil {
			return nil, asUploadError("upload", err)
		}
	}
	return l.Client.BootResource.Get(br.ID)
}

// asUploadError keeps the region's status and message from gomaasclient's and
// regiontest's errors.
func asUploadError(step string, err error) error {
	var ce *regiontest.ChunkError
	if errors.As(err, &ce) {
		return &UploadError{Step: step, Status: ce.Status, Body: ce.Body, Err: err}
	}
	if se, ok := gomaasapi.GetServerError(err); ok {
		return &UploadError{Step: step, Status: se.StatusCode, Body: se.BodyMessage, Err: err}
	}
	return &UploadError{Step: step, Err: err}
}

// ctxReader stops a long upload when ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}
