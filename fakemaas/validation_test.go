package fakemaas_test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"mime/multipart"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/canonical/gomaasclient/client"
	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"
	gomaasapi "github.com/juju/gomaasapi/v2"

	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

type apiResult struct {
	Status      int
	ContentType string
	Body        string
}

// call sends one API request signed with key (empty: unsigned).
func call(t *testing.T, env *regiontest.Env, key, method, path string, form url.Values, multipartForm bool) apiResult {
	t.Helper()
	var body io.Reader
	ctype := ""
	if form != nil {
		if multipartForm {
			var buf bytes.Buffer
			mw := multipart.NewWriter(&buf)
			for k, vs := range form {
				for _, v := range vs {
					mw.WriteField(k, v)
				}
			}
			mw.Close()
			body, ctype = &buf, mw.FormDataContentType()
		} else {
			body, ctype = strings.NewReader(form.Encode()), "application/x-www-form-urlencoded"
		}
	}
	req, err := http.NewRequest(method, env.Server.URL+path, body)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if key != "" {
		c, err := oauth.ParseKey(key)
		if err != nil {
			t.Fatal(err)
		}
		oauth.Sign(req, c)
	}
	return do(t, req)
}

func do(t *testing.T, req *http.Request) apiResult {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return apiResult{resp.StatusCode, ct, string(b)}
}

// snapshot is everything a bad request must leave unchanged: the API's view of resources
// and machines, and the files in the state directory's blob store.
func snapshot(t *testing.T, env *regiontest.Env) string {
	t.Helper()
	var b strings.Builder
	for _, p := range []string{"/MAAS/api/2.0/boot-resources/", "/MAAS/api/2.0/machines/"} {
		r := call(t, env, env.APIKey, http.MethodGet, p, nil, false)
		fmt.Fprintf(&b, "%s %d %s\n", p, r.Status, r.Body)
	}
	for id := 1; id < 10; id++ {
		r := call(t, env, env.APIKey, http.MethodGet, fmt.Sprintf("/MAAS/api/2.0/boot-resources/%d/", id), nil, false)
		fmt.Fprintf(&b, "resource %d: %d %s\n", id, r.Status, r.Body)
	}
	var files []string
	filepath.WalkDir(filepath.Join(env.StateDir, "blobs"), func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			fi, _ := d.Info()
			files = append(files, fmt.Sprintf("%s %d", strings.TrimPrefix(p, env.StateDir), fi.Size()))
		}
		return nil
	})
	sort.Strings(files)
	b.WriteString(strings.Join(files, "\n"))
	return b.String()
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// rawPut sends a PUT whose body is shorter than its Content-Length, as a truncated
// upload does, and reads the answer.
func rawPut(t *testing.T, env *regiontest.Env, path string, contentLength int, body []byte) apiResult {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPut, env.Server.URL+path, nil)
	c, _ := oauth.ParseKey(env.APIKey)
	oauth.Sign(req, c)
	conn, err := net.Dial("tcp", env.Server.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: x\r\nAuthorization: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		path, req.Header.Get("Authorization"), contentLength)
	conn.Write(body)
	conn.(*net.TCPConn).CloseWrite()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";")
	return apiResult{resp.StatusCode, ct, string(b)}
}

func TestValidationErrors(t *testing.T) {
	env := regiontest.Start(t)
	env.ImportDefaultStream(t)
	admin := env.APIKey
	cred, _ := oauth.ParseKey(admin)

	// A partially uploaded resource (1 of 2 chunks), a complete one, and a machine.
	partial := bytes.Repeat([]byte("p"), 2000)
	pr := call(t, env, admin, http.MethodPost, "/MAAS/api/2.0/boot-resources/", url.Values{"name": {"partial"}, "architecture": {"amd64/generic"},
		"sha256": {sha(partial)}, "size": {"2000"}, "filetype": {"ddraw"}}, true)
	if pr.Status != http.StatusCreated {
		t.Fatalf("create partial: %+v", pr)
	}
	uploadURI, _, err := regiontest.NewestUploadURI([]byte(pr.Body))
	if err != nil {
		t.Fatal(err)
	}
	if err := regiontest.PutChunk(authClient(env), env.Server.URL+uploadURI, partial[:1000]); err != nil {
		t.Fatal(err)
	}
	complete := []byte("complete image")
	dr := call(t, env, admin, http.MethodPost, "/MAAS/api/2.0/boot-resources/", url.Values{"name": {"done"}, "architecture": {"amd64/generic"},
		"sha256": {sha(complete)}, "size": {fmt.Sprint(len(complete))}}, true)
	completeURI, _, err := regiontest.NewestUploadURI([]byte(dr.Body))
	if err != nil {
		t.Fatal(err)
	}
	if err := regiontest.PutChunk(authClient(env), env.Server.URL+completeURI, complete); err != nil {
		t.Fatal(err)
	}
	// Resource 1 is synced (imported first); the file named is the partial upload's.
	syncedURI := "/MAAS/api/2.0/boot-resources/1/upload/" + path.Base(strings.TrimSuffix(uploadURI, "/")) + "/"
	m := call(t, env, admin, http.MethodPost, "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64/generic"},
		"mac_addresses": {"52:54:00:00:00:01"}, "hostname": {"node1"}}, false)
	if m.Status != http.StatusOK {
		t.Fatalf("create machine: %+v", m)
	}
	// Created with commission=true (the default) it is Commissioning; aborting makes it
	// New with no owner.
	if ab := call(t, env, admin, http.MethodPost, "/MAAS/api/2.0/machines/"+systemID(t, env, "node1")+"/?op=abort", url.Values{}, false); ab.Status != http.StatusOK {
		t.Fatalf("abort commissioning: %+v", ab)
	}
	good := url.Values{"name": {"img"}, "architecture": {"amd64/generic"}, "sha256": {sha([]byte("x"))}, "size": {"1"}, "filetype": {"tgz"}}
	with := func(k, v string) url.Values {
		f := url.Values{}
		for kk, vv := range good {
			f[kk] = vv
		}
		if v == "" {
			f.Del(k)
		} else {
			f.Set(k, v)
		}
		return f
	}
	badSig := func() string {
		return fmt.Sprintf(`OAuth oauth_version="1.0", oauth_signature_method="PLAINTEXT", oauth_consumer_key="%s", oauth_token="%s", oauth_signature="%%26wrong", oauth_nonce="n", oauth_timestamp="1"`, cred.ConsumerKey, cred.TokenKey)
	}

	type tc struct {
		name string
		do   func() apiResult
		want apiResult
	}
	json := "application/json"
	text := "text/plain"
	cases := []tc{
		{"bad filetype", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("filetype", "zip"), true)
		},
			apiResult{400, json, `{"filetype": ["Select a valid choice. zip is not one of the available choices."]}`}},
		{"bad base_image format", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("base_image", "noble"), true)
		}, apiResult{400, json, `{"base_image": ["a base image must follow the format: <osystem>/<series>"]}`}},
		{"non-Linux base_image", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("base_image", "windows/2019"), true)
		}, apiResult{400, json, `{"base_image": ["custom images require a valid non-custom OS type base image"]}`}},
		{"unknown base_image release", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("base_image", "ubuntu/nosuch"), true)
		}, apiResult{400, json, `{"base_image": ["please select a valid base image OS and version"]}`}},
		{"short sha256", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("sha256", "abcdef0123"), true)
		},
			apiResult{400, json, `{"sha256": ["Ensure this value has at least 64 characters (it has 10)."]}`}},
		{"reserved name (os)", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("name", "ubuntu"), true)
		},
			apiResult{400, json, `{"name": ["ubuntu is a reserved name"]}`}},
		{"reserved name (synced release)", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("name", "noble"), true)
		}, apiResult{400, json, `{"name": ["noble is a reserved name"]}`}},
		{"reserved name (centos)", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("name", "centos8"), true)
		}, apiResult{400, json, `{"name": ["centos8 is a reserved name"]}`}},
		{"unsupported os in name", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("name", "plan9/4"), true)
		}, apiResult{400, json, `{"name": ["Unsupport operating system plan9, supported operating systems: ['ubuntu', 'ubuntu-core', 'bootloader', 'centos', 'rhel', 'custom', 'windows', 'suse', 'esxi', 'ol', 'onie']"]}`}},
		{"unknown architecture", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("architecture", "s390x/generic"), true)
		}, apiResult{400, json, `{"architecture": ["'s390x/generic' is not a valid architecture.  It should be one of: 'amd64/generic'."]}`}},
		{"same sha256, other size", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/boot-resources/", with("sha256", sha(complete)), true)
		}, apiResult{400, text, "File already exists with sha256 that is of different size."}},
		{"bad resource type filter", func() apiResult {
			return call(t, env, admin, "GET", "/MAAS/api/2.0/boot-resources/?type=foo", nil, false)
		},
			apiResult{400, text, "'foo' is not a valid boot resource type. Available types: ['synced', 'uploaded']"}},
		{"upload: missing data", func() apiResult { return rawPut(t, env, uploadURI, 0, nil) },
			apiResult{400, text, "Missing data."}},
		{"upload: truncated chunk", func() apiResult { return rawPut(t, env, uploadURI, 500, partial[:200]) },
			apiResult{400, text, "Content-Length doesn't equal size of received data."}},
		{"upload: too much data", func() apiResult { return rawPut(t, env, uploadURI, 1001, bytes.Repeat([]byte("p"), 1001)) },
			apiResult{400, text, "Too much data received."}},
		{"upload: wrong sha256 on completion", func() apiResult { return rawPut(t, env, uploadURI, 1000, bytes.Repeat([]byte("q"), 1000)) },
			apiResult{400, text, "Saved content does not match given SHA256 value."}},
		{"upload: to a complete file", func() apiResult { return rawPut(t, env, completeURI, 3, []byte("abc")) },
			apiResult{400, text, "Cannot upload to a complete file."}},
		{"upload: to a synced resource", func() apiResult { return rawPut(t, env, syncedURI, 3, []byte("abc")) },
			apiResult{403, text, "Cannot upload to a resource of type: 0."}},
		{"oauth: no header", func() apiResult { return call(t, env, "", "GET", "/MAAS/api/2.0/machines/", nil, false) },
			apiResult{401, text, "Forbidden"}},
		{"oauth: malformed header", func() apiResult {
			req, _ := http.NewRequest("GET", env.Server.URL+"/MAAS/api/2.0/machines/", nil)
			req.Header.Set("Authorization", `OAuth oauth_consumer_key="`+cred.ConsumerKey+`"`)
			return do(t, req)
		}, apiResult{401, text, "Forbidden"}},
		{"oauth: bad timestamp", func() apiResult {
			req, _ := http.NewRequest("GET", env.Server.URL+"/MAAS/api/2.0/machines/", nil)
			req.Header.Set("Authorization", strings.Replace(badSig(), `oauth_timestamp="1"`, `oauth_timestamp="soon"`, 1))
			return do(t, req)
		}, apiResult{400, text, "'Bad Request: the following problems were found among the auth params: oauth_timestamp has an unexpected type'"}},
		{"oauth: wrong token secret", func() apiResult {
			req, _ := http.NewRequest("POST", env.Server.URL+"/MAAS/api/2.0/machines/", strings.NewReader("architecture=amd64%2Fgeneric&mac_addresses=52:54:00:00:00:09"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", badSig())
			return do(t, req)
		}, apiResult{401, text, "Authorization Error: 'Invalid signature.'"}},
		{"oauth: unknown token", func() apiResult {
			return call(t, env, cred.ConsumerKey+":nosuchtoken:"+cred.TokenSecret, "GET", "/MAAS/api/2.0/machines/", nil, false)
		}, apiResult{401, text, "Authorization Error: 'Invalid access token: nosuchtoken'"}},
		{"oauth: unknown consumer", func() apiResult {
			return call(t, env, "nosuchconsumer:"+cred.TokenKey+":"+cred.TokenSecret, "GET", "/MAAS/api/2.0/machines/", nil, false)
		}, apiResult{401, text, "Authorization Error: Invalid API key."}},
		{"machine: no MAC", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64/generic"}}, false)
		}, apiResult{400, json, `{"mac_addresses": ["This field is required."]}`}},
		{"machine: bad MAC", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64"}, "mac_addresses": {"52:54:00"}}, false)
		}, apiResult{400, json, `{"mac_addresses": ["One or more MAC addresses is invalid. ('52:54:00' is not a valid MAC address.)"]}`}},
		{"machine: MAC in use", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64"}, "mac_addresses": {"52:54:00:00:00:01"}}, false)
		}, apiResult{400, json, `{"mac_addresses": ["One or more MAC addresses is invalid. (MAC address 52:54:00:00:00:01 already in use on node1.)"]}`}},
		{"machine: unknown architecture", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"arm64/generic"}, "mac_addresses": {"52:54:00:00:00:02"}}, false)
		}, apiResult{400, json, `{"architecture": ["'arm64/generic' is not a valid architecture.  It should be one of: 'amd64/generic'."]}`}},
		{"machine: unknown power type", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/", url.Values{"architecture": {"amd64"}, "mac_addresses": {"52:54:00:00:00:02"}, "power_type": {"ipmi"}}, false)
		}, apiResult{400, json, `{"power_type": ["Select a valid choice. ipmi is not one of the available choices."]}`}},
		{"machine: deploy from New", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/"+systemID(t, env, "node1")+"/?op=deploy", url.Values{}, false)
		}, apiResult{409, text, "Can't deploy a machine that is in the 'New' state"}},
		{"machine: mark_fixed when not broken", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/"+systemID(t, env, "node1")+"/?op=mark_fixed", url.Values{}, false)
		}, apiResult{409, text, "Can't mark a non-broken node as 'Ready'."}},
		{"machine: power_on unallocated", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/"+systemID(t, env, "node1")+"/?op=power_on", url.Values{}, false)
		}, apiResult{409, text, "Can't start node: it hasn't been allocated."}},
		{"machine: allocate with no match", func() apiResult {
			return call(t, env, admin, "POST", "/MAAS/api/2.0/machines/?op=allocate", url.Values{"name": {"nosuch"}}, false)
		}, apiResult{409, text, `No available machine matches constraints: [('name', ['nosuch'])] (resolved to "name=nosuch")`}},
		{"config: unknown name", func() apiResult {
			return call(t, env, admin, "GET", "/MAAS/api/2.0/maas/?op=get_config&name=nosuch", nil, false)
		}, apiResult{400, json, ""}},
		{"events: bad level", func() apiResult {
			return call(t, env, admin, "GET", "/MAAS/api/2.0/events/?op=query&level=LOUD", nil, false)
		}, apiResult{400, text, "Unrecognised log level: LOUD"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := snapshot(t, env)
			got := c.do()
			if c.want.Body == "" { // long generated message: check status and type only
				got.Body = ""
			}
			if diff := cmp.Diff(c.want, got); diff != "" {
				t.Errorf("response (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(before, snapshot(t, env)); diff != "" {
				t.Errorf("state changed (-before +after):\n%s", diff)
			}
		})
	}
	// After all the refused chunks, the partial upload continues where it stopped.
	if err := regiontest.PutChunk(authClient(env), env.Server.URL+uploadURI, partial[1000:]); err != nil {
		t.Fatalf("completing the partial upload: %v", err)
	}
	img, err := env.Region.OpenImage(t.Context(), sha(partial)[:7])
	if err != nil {
		t.Fatalf("OpenImage after completion: %v", err)
	}
	img.Close()
	if _, err := os.Stat(filepath.Join(env.StateDir, "blobs", "sha256", sha(partial))); err != nil {
		t.Errorf("blob not in the store: %v", err)
	}
}

func authClient(env *regiontest.Env) gomaasapi.Client {
	return env.Client.BootResources.(*client.BootResources).APIClient.AuthClient
}

func systemID(t *testing.T, env *regiontest.Env, hostname string) string {
	t.Helper()
	ms, err := env.Client.Machines.Get(&entity.MachinesParams{Hostname: []string{hostname}})
	if err != nil || len(ms) != 1 {
		t.Fatalf("machine %s: %v, %v", hostname, ms, err)
	}
	return ms[0].SystemID
}
