package fakemaas

import (
	"encoding/json"
	"net/http"
	"strings"
)

// The user-data scripts the fake serves to ephemeral environments on the node metadata
// tree (/MAAS/metadata/<version>/user-data). MAAS serves its own script runner
// (maas_run_remote_scripts with maas_api_helper); the commissioning runner here is the
// fake's own, smaller program that does the same on the wire: read the node's scripts
// from maas-scripts, run them and report each result with op=signal. The power-off and
// enlistment scripts are served when the machine should be off or is unknown. A
// deploying ephemeral's user-data is not here: at MAAS 3.7 it is the curtin pack
// (mdCurtinUserData). Scripts are rendered with the node's metadata URL and OAuth
// credentials, as MAAS renders its user-data.

// runnerConfig is what a script needs to talk to the metadata service as the node.
type runnerConfig struct {
	MetadataURL string `json:"metadata_url"` // http://<host>/MAAS/metadata/
	ConsumerKey string `json:"consumer_key"`
	TokenKey    string `json:"token_key"`
	TokenSecret string `json:"token_secret"`
}

// requestMetadataURL is the metadata URL as the requesting node reached it.
func requestMetadataURL(hr *http.Request) string {
	scheme := "http"
	if hr.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + hr.Host + MetadataPrefix
}

// pythonRunner is the shared part of the Python user-data scripts: configuration, the
// OAuth PLAINTEXT header, GET and the multipart op=signal POST.
const pythonRunner = `#!/usr/bin/env python3
# maasemu user-data: %KIND%.
import io, json, os, subprocess, sys, tarfile, tempfile, time, uuid, urllib.error, urllib.request

CONFIG = json.loads(%CONFIG%)


def auth_header():
    return ('OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", '
            'oauth_consumer_key="%s", oauth_token="%s", oauth_signature="&%s", '
            'oauth_nonce="%s", oauth_timestamp="%d"' % (
                CONFIG["consumer_key"], CONFIG["token_key"], CONFIG["token_secret"],
                uuid.uuid4(), int(time.time())))


def request(url, data=None, headers=None):
    hdrs = {"Authorization": auth_header()}
    hdrs.update(headers or {})
    req = urllib.request.Request(url, data=data, headers=hdrs)
    with urllib.request.urlopen(req, timeout=60) as resp:
        return resp.status, resp.read()


def signal(status, error=None, files=None, **fields):
    boundary = uuid.uuid4().hex
    body = io.BytesIO()
    parts = [("op", "signal"), ("status", status)]
    if error:
        parts.append(("error", error))
    parts += [(k, str(v)) for k, v in sorted(fields.items()) if v is not None]
    for name, value in parts:
        body.write(("--%s\r\nContent-Disposition: form-data; name=\"%s\"\r\n\r\n%s\r\n" % (boundary, name, value)).encode())
    for name, content in sorted((files or {}).items()):
        body.write(("--%s\r\nContent-Disposition: form-data; name=\"%s\"; filename=\"%s\"\r\n"
                    "Content-Type: application/octet-stream\r\n\r\n" % (boundary, name, name)).encode())
        body.write(content)
        body.write(b"\r\n")
    body.write(("--%s--\r\n" % boundary).encode())
    url = CONFIG["metadata_url"].rstrip("/") + "/2012-03-01/"
    return request(url, body.getvalue(), {"Content-Type": "multipart/form-data; boundary=%s" % boundary})
`

// commissioningMain runs the node's commissioning scripts.
const commissioningMain = `

def main():
    status, body = request(CONFIG["metadata_url"].rstrip("/") + "/2012-03-01/maas-scripts")
    if status == 204:
        signal("OK", "No scripts to run")
        return 0
    work = tempfile.mkdtemp(prefix="maasemu-scripts-")
    with tarfile.open(fileobj=io.BytesIO(body)) as tar:
        tar.extractall(work)
    with open(os.path.join(work, "index.json")) as f:
        index = json.load(f)["1.0"]
    failed = 0
    for script in index.get("commissioning_scripts", []):
        if script.get("has_finished"):
            continue
        name = script["name"]
        signal("WORKING", "Starting %s" % name, script_result_id=script.get("script_result_id"), name=name)
        path = os.path.join(work, script["path"])
        os.chmod(path, 0o755)
        start = time.time()
        proc = subprocess.run([path], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        runtime = round(time.time() - start, 2)
        if proc.returncode != 0:
            failed += 1
        signal("WORKING", "Finished %s: %d" % (name, proc.returncode),
               files={name: proc.stdout + proc.stderr, name + ".out": proc.stdout, name + ".err": proc.stderr},
               script_result_id=script.get("script_result_id"), name=name, exit_status=proc.returncode,
               runtime=runtime)
    if failed:
        signal("FAILED", "%d commissioning script(s) failed" % failed)
        return 1
    signal("OK", "All commissioning scripts ran")
    return 0


sys.exit(main())
`

func renderRunner(kind, main string, cfg runnerConfig) []byte {
	b, _ := json.Marshal(cfg)
	q, _ := json.Marshal(string(b))
	s := strings.Replace(pythonRunner, "%KIND%", kind, 1)
	s = strings.Replace(s, "%CONFIG%", string(q), 1)
	return []byte(s + main)
}

// commissioningUserData is the commissioning script runner for a node.
func commissioningUserData(cfg runnerConfig) []byte {
	return renderRunner("the commissioning script runner (maas-scripts, op=signal)", commissioningMain, cfg)
}

// poweroffUserData is served when the machine should be off (boot purpose poweroff).
const poweroffUserData = `#!/bin/sh
# maasemu user-data: this machine is not in use, so MAAS powers it off.
echo "maasemu: powering off (boot purpose poweroff)"
exec /sbin/poweroff
`

// enlistUserData is served to an unknown machine booting the enlistment environment.
const enlistUserData = `#!/bin/sh
# maasemu user-data: enlistment.
echo "maasemu: enlistment is not emulated; create the machine with POST /MAAS/api/2.0/machines/ instead" >&2
exec /sbin/poweroff
`

// resourcesScript is the content of the builtin 50-maas-01-commissioning: LXD's
// machine-resources report of this machine (MAAS ships the binary with its scripts).
const resourcesScript = `#!/bin/sh
# maasemu: 50-maas-01-commissioning prints this machine's hardware as LXD's
# machine-resources reports it (api_version 1.0).
arch=$(dpkg --print-architecture 2>/dev/null || uname -m)
for b in machine-resources /usr/share/maas/machine-resources/"$arch" /snap/maas/current/usr/share/maas/machine-resources/"$arch"; do
	if command -v "$b" >/dev/null 2>&1; then
		exec "$b"
	fi
done
echo "maasemu: machine-resources is not available in this environment; the machine's hardware cannot be reported" >&2
exit 1
`
