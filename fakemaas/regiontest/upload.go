package regiontest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"

	"github.com/canonical/gomaasclient/client"
	"github.com/canonical/gomaasclient/entity"
	gomaasapi "github.com/juju/gomaasapi/v2"
)

// ChunkSize is the maas CLI's upload chunk (1 << 22).
const ChunkSize = 1 << 22

// UploadFile is the maas CLI's upload_content: consecutive ChunkSize PUTs of content
// (application/octet-stream, OAuth-signed) to uploadURI, relative to the client's API URL.
func UploadFile(c *client.Client, uploadURI string, content io.Reader, chunk int) error {
	br, ok := c.BootResources.(*client.BootResources)
	if !ok {
		return fmt.Errorf("regiontest: unexpected BootResources type %T", c.BootResources)
	}
	auth := br.APIClient.AuthClient
	u := auth.GetURL(&url.URL{Path: uploadURI})
	if chunk <= 0 {
		chunk = ChunkSize
	}
	buf := make([]byte, chunk)
	for {
		n, err := io.ReadFull(content, buf)
		if n > 0 {
			if perr := PutChunk(auth, u.String(), buf[:n]); perr != nil {
				return perr
			}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// PutChunk sends one signed chunk; a non-200 answer is returned as *ChunkError.
func PutChunk(auth gomaasapi.Client, uploadURL string, data []byte) error {
	req, err := http.NewRequest(http.MethodPut, uploadURL, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.ContentLength = int64(len(data))
	if err := auth.Signer.OAuthSign(req); err != nil {
		return err
	}
	hc := auth.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return &ChunkError{Status: resp.StatusCode, Body: string(body)}
	}
	return nil
}

// ChunkError is a refused chunk.
type ChunkError struct {
	Status int
	Body   string
}

func (e *ChunkError) Error() string { return fmt.Sprintf("upload chunk: %d %s", e.Status, e.Body) }

// UploadCustomImage creates an uploaded boot resource for content and uploads it in 4 MiB
// chunks exactly as `maas admin boot-resources create name=... content@=FILE` does. It
// returns the created resource (re-read after the upload).
func UploadCustomImage(c *client.Client, name, arch, filetype, baseImage string, content []byte) (*entity.BootResource, error) {
	s := sha256.Sum256(content)
	params := url.Values{"name": {name}, "architecture": {arch}, "filetype": {filetype},
		"sha256": {hex.EncodeToString(s[:])}, "size": {strconv.Itoa(len(content))}}
	if baseImage != "" {
		params.Set("base_image", baseImage)
	}
	br, raw, err := CreateBootResourceRaw(c, params)
	if err != nil {
		return nil, err
	}
	uri, complete, err := NewestUploadURI(raw)
	if err != nil {
		return nil, err
	}
	if !complete {
		if err := UploadFile(c, uri, bytes.NewReader(content), ChunkSize); err != nil {
			return nil, err
		}
	}
	return c.BootResource.Get(br.ID)
}

// CreateBootResourceRaw is POST boot-resources/ as the maas CLI sends it: a multipart form
// with name, architecture, filetype, base_image, title, sha256 and size (no content). It
// returns the decoded resource and the raw JSON (for upload_uri, which gomaasclient's
// entity does not decode). gomaasclient v0.15.0's BootResources.Create is not
// implemented, so this goes through its APIClient.
func CreateBootResourceRaw(c *client.Client, params url.Values) (*entity.BootResource, []byte, error) {
	br, ok := c.BootResources.(*client.BootResources)
	if !ok {
		return nil, nil, fmt.Errorf("regiontest: unexpected BootResources type %T", c.BootResources)
	}
	out := new(entity.BootResource)
	var raw []byte
	err := br.APIClient.GetSubObject("boot-resources").PostFiles("", params, map[string][]byte{}, func(b []byte) error {
		raw = append([]byte(nil), b...)
		return json.Unmarshal(b, out)
	})
	return out, raw, err
}

// NewestUploadURI picks the single file of the newest set in a create response, as the
// maas CLI does, and returns its upload_uri and complete flag.
func NewestUploadURI(raw []byte) (string, bool, error) {
	var doc struct {
		Sets map[string]struct {
			Files map[string]struct {
				Complete  bool   `json:"complete"`
				UploadURI string `json:"upload_uri"`
			} `json:"files"`
		} `json:"sets"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return "", false, err
	}
	var versions []string
	for v := range doc.Sets {
		versions = append(versions, v)
	}
	if len(versions) == 0 {
		return "", false, fmt.Errorf("regiontest: no sets returned, no way to get the resource file")
	}
	sort.Sort(sort.Reverse(sort.StringSlice(versions)))
	files := doc.Sets[versions[0]].Files
	if len(files) != 1 {
		return "", false, fmt.Errorf("regiontest: newest set has %d files, want 1", len(files))
	}
	for _, f := range files {
		return f.UploadURI, f.Complete, nil
	}
	return "", false, nil
}
