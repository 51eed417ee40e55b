package commissioning

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"sort"
	"strconv"
	"strings"
)

// Signal statuses (SIGNAL_STATUS in MAAS 3.7's src/metadataserver/enum.py).
const (
	StatusOK              = "OK"
	StatusFailed          = "FAILED"
	StatusWorking         = "WORKING"
	StatusCommissioning   = "COMMISSIONING"
	StatusTesting         = "TESTING"
	StatusTimedOut        = "TIMEDOUT"
	StatusInstalling      = "INSTALLING"
	StatusApplyingNetconf = "APPLYING_NETCONF"
	StatusReleasing       = "RELEASING"
)

// Statuses are every status MAAS 3.7 accepts in op=signal.
var Statuses = []string{StatusOK, StatusFailed, StatusWorking, StatusCommissioning, StatusTesting,
	StatusTimedOut, StatusInstalling, StatusApplyingNetconf, StatusReleasing}

// Signal is one op=signal request to <metadata_url>/<version>/: a status, optional script
// result fields and result files. A file's name says where MAAS stores it: "<script>"
// is the combined output, "<script>.out" stdout, "<script>.err" stderr and
// "<script>.yaml" the result YAML.
type Signal struct {
	Status          string
	Error           string
	ScriptResultID  int  // 0: not sent
	ExitStatus      *int // nil: not sent
	Name            string
	Runtime         float64 // seconds; 0: not sent
	ScriptVersionID int     // 0: not sent
	PowerType       string
	PowerParameters string // JSON object, as the BMC detection script sends it
	Files           map[string][]byte
}

// ScriptResult is the signal a script runner sends when a script finished: status
// WORKING with the exit status and the script's combined output, stdout and stderr.
func ScriptResult(name string, exitStatus int, stdout, stderr []byte) Signal {
	combined := append(append([]byte{}, stdout...), stderr...)
	return Signal{Status: StatusWorking, Name: name, ExitStatus: &exitStatus,
		Files: map[string][]byte{name: combined, name + ".out": stdout, name + ".err": stderr}}
}

// ResourcesResult is the signal carrying the result of 50-maas-01-commissioning.
func ResourcesResult(resources []byte) Signal {
	return ScriptResult(ScriptName, 0, resources, nil)
}

// Body encodes s as the multipart/form-data body MAAS's maas_api_helper.signal sends: the
// field op=signal, the fields given, and each file as a form file named after it. The
// parts are in a stable order.
func (s Signal) Body() (contentType string, body []byte, err error) {
	if s.Status == "" {
		return "", nil, fmt.Errorf("commissioning: a signal needs a status (one of %s)", strings.Join(Statuses, ", "))
	}
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	field := func(k, v string) {
		if err == nil {
			err = mw.WriteField(k, v)
		}
	}
	field("op", "signal")
	field("status", s.Status)
	if s.Error != "" {
		field("error", s.Error)
	}
	if s.ScriptResultID != 0 {
		field("script_result_id", strconv.Itoa(s.ScriptResultID))
	}
	if s.ExitStatus != nil {
		field("exit_status", strconv.Itoa(*s.ExitStatus))
	}
	if s.Name != "" {
		field("name", s.Name)
	}
	if s.Runtime != 0 {
		field("runtime", strconv.FormatFloat(s.Runtime, 'f', -1, 64))
	}
	if s.ScriptVersionID != 0 {
		field("script_version_id", strconv.Itoa(s.ScriptVersionID))
	}
	if s.PowerType != "" {
		field("power_type", s.PowerType)
		field("power_parameters", s.PowerParameters)
	}
	names := make([]string, 0, len(s.Files))
	for n := range s.Files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if err != nil {
			break
		}
		var w io.Writer
		w, err = mw.CreateFormFile(n, n)
		if err == nil {
			_, err = w.Write(s.Files[n])
		}
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return "", nil, fmt.Errorf("commissioning: encoding the signal: %w", err)
	}
	return mw.FormDataContentType(), buf.Bytes(), nil
}

// Request builds the POST of s to metadataURL (e.g. http://<rack>:5248/MAAS/metadata/),
// at <metadataURL>/2012-03-01/. The caller signs it (OAuth) and sends it.
func (s Signal) Request(ctx context.Context, metadataURL string) (*http.Request, error) {
	ct, body, err := s.Body()
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(metadataURL, "/") + "/2012-03-01/"
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("commissioning: %w", err)
	}
	req.Header.Set("Content-Type", ct)
	return req, nil
}
