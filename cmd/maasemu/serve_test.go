package main

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/canonical/gomaasclient/client"
	"github.com/canonical/gomaasclient/entity"
	"github.com/google/go-cmp/cmp"

	"github.com/maasemu/maasemu/fakemaas/oauth"
	"github.com/maasemu/maasemu/fakemaas/regiontest"
)

// buildMaasemu builds this command into a temporary directory.
func buildMaasemu(t *testing.T) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("building maasemu: needs the go tool on PATH: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "maasemu")
	cmd := exec.Command(gobin, "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// server is one running "maasemu serve".
type server struct {
	cmd    *exec.Cmd
	url    string // http://addr/MAAS/
	rack   string // what the rack line says it serves ("" without rack flags)
	stderr *bytes.Buffer
	done   chan error
}

var listenLine = regexp.MustCompile(`listening on (http://\S+/MAAS/)`)

// startServe starts "maasemu serve" on state with extra flags and waits until it says where
// it listens (and, with rack flags, what the rack serves) and its API answers.
func startServe(t *testing.T, bin, state string, extra ...string) *server {
	t.Helper()
	return startServeWith(t, bin, state, true, extra...)
}

func startServeWith(t *testing.T, bin, state string, probe bool, extra ...string) *server {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--state", state}, extra...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, stderr: new(bytes.Buffer), done: make(chan error, 1)}
	cmd.Stderr = s.stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting maasemu serve: %v", err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	wantRack := slices.ContainsFunc(extra, func(a string) bool {
		return a == "--tftp" || a == "--http" || a == "--dhcp-interface"
	})
	type line struct{ region, rack string }
	lines := make(chan line, 2)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := listenLine.FindStringSubmatch(sc.Text()); m != nil {
				lines <- line{region: m[1]}
			} else if m := rackLine.FindStringSubmatch(sc.Text()); m != nil {
				lines <- line{rack: m[1]}
			}
		}
		s.done <- cmd.Wait()
	}()
	timeout := time.After(60 * time.Second)
	for s.url == "" || (wantRack && s.rack == "") {
		select {
		case l := <-lines:
			if l.region != "" {
				s.url = l.region
			} else {
				s.rack = l.rack
			}
		case err := <-s.done:
			t.Fatalf("maasemu serve exited: %v\n%s", err, s.stderr)
		case <-timeout:
			t.Fatalf("maasemu serve did not start\n%s", s.stderr)
		}
	}
	if !probe {
		return s
	}
	// Ready: GET version/ answers 200.
	for i := 0; ; i++ {
		resp, err := http.Get(s.url + "api/2.0/version/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if i > 600 {
			t.Fatalf("version/ never answered 200: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s
}

func (s *server) kill9(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatalf("kill -9: %v", err)
	}
	<-s.done
}

func sum(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// halfChunk starts a PUT of a chunk, sends only part of its body and returns the
// connection, so the server can be killed in the middle of the chunk.
func halfChunk(t *testing.T, serverURL, uploadURI, key string, chunk []byte) net.Conn {
	t.Helper()
	u, _ := url.Parse(serverURL)
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest(http.MethodPut, serverURL, nil)
	c, _ := oauth.ParseKey(key)
	oauth.Sign(req, c)
	fmt.Fprintf(conn, "PUT %s HTTP/1.1\r\nHost: %s\r\nAuthorization: %s\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n",
		uploadURI, u.Host, req.Header.Get("Authorization"), len(chunk))
	conn.Write(chunk[:len(chunk)/2])
	return conn
}

type fileState struct {
	Complete bool
	Progress float64
	SHA256   string
}

// uploadState reads the upload's file through the API.
func uploadState(t *testing.T, c *client.Client, id int) fileState {
	t.Helper()
	br, err := c.BootResource.Get(id)
	if err != nil {
		t.Fatalf("reading boot resource %d: %v", id, err)
	}
	raw, _, err := getRaw(c, fmt.Sprintf("boot-resources/%d/", id))
	if err != nil {
		t.Fatal(err)
	}
	var fs fileState
	for _, s := range br.Sets {
		for _, f := range s.Files {
			fs.Complete, fs.SHA256 = f.Complete, f.SHA256
		}
	}
	if m := regexp.MustCompile(`"progress":([0-9.]+)`).FindSubmatch(raw); m != nil {
		fmt.Sscanf(string(m[1]), "%g", &fs.Progress)
	}
	return fs
}

func getRaw(c *client.Client, path string) ([]byte, int, error) {
	auth := c.BootResources.(*client.BootResources).APIClient.AuthClient
	req, _ := http.NewRequest(http.MethodGet, auth.GetURL(&url.URL{Path: path}).String(), nil)
	auth.Signer.OAuthSign(req)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return b, resp.StatusCode, err
}

// TestServeCrashSafety kills "maasemu serve" with SIGKILL at several points of a chunked
// upload and of a deploy, restarts it, and checks that everything acknowledged is there,
// nothing unacknowledged is, and the upload continues where it stopped.
func TestServeCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the maasemu binary")
	}
	bin := buildMaasemu(t)
	state := t.TempDir()
	stream := regiontest.DefaultStream(t.TempDir())
	if err := stream.Write(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "images", "import", "--source", stream.Dir, "--state", state).CombinedOutput(); err != nil {
		t.Fatalf("maasemu images import: %v\n%s", err, out)
	}
	key, err := os.ReadFile(filepath.Join(state, "admin.apikey"))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(state, "admin.apikey")); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.apikey mode = %v, want 0600", fi.Mode().Perm())
	}
	apiKey := strings.TrimSpace(string(key))
	srv := startServe(t, bin, state)
	login := func(s *server) *client.Client {
		c, err := client.GetClient(s.url, apiKey, "2.0")
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := login(srv)

	// A 3-chunk upload (2 x 4 MiB + 1 KiB).
	content := make([]byte, 2*regiontest.ChunkSize+1024)
	rand.Read(content)
	br, raw, err := regiontest.CreateBootResourceRaw(c, url.Values{"name": {"crashimg"}, "architecture": {"amd64/generic"},
		"filetype": {"ddraw"}, "sha256": {sum(content)}, "size": {fmt.Sprint(len(content))}})
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	uploadURI, _, err := regiontest.NewestUploadURI(raw)
	if err != nil {
		t.Fatal(err)
	}
	// Kill right after the create: the resource is there with no data.
	srv.kill9(t)
	srv = startServe(t, bin, state)
	c = login(srv)
	if got := uploadState(t, c, br.ID); got != (fileState{Complete: false, Progress: 0, SHA256: sum(content)}) {
		t.Fatalf("after kill at create: %+v", got)
	}

	chunks := [][]byte{content[:regiontest.ChunkSize], content[regiontest.ChunkSize : 2*regiontest.ChunkSize], content[2*regiontest.ChunkSize:]}
	acked := 0
	for i, chunk := range chunks {
		// Kill in the middle of this chunk: nothing of it may survive.
		conn := halfChunk(t, srv.url, uploadURI, apiKey, chunk)
		time.Sleep(100 * time.Millisecond)
		srv.kill9(t)
		conn.Close()
		srv = startServe(t, bin, state)
		c = login(srv)
		auth := c.BootResources.(*client.BootResources).APIClient.AuthClient
		want := fileState{Complete: false, Progress: 100 * float64(acked) / float64(len(content)), SHA256: sum(content)}
		if diff := cmp.Diff(want, uploadState(t, c, br.ID)); diff != "" {
			t.Fatalf("after kill in chunk %d (-want +got):\n%s", i, diff)
		}
		// The interrupted upload continues from where it stopped: send the whole chunk.
		if err := regiontest.PutChunk(auth, srv.url+strings.TrimPrefix(uploadURI, "/MAAS/"), chunk); err != nil {
			t.Fatalf("chunk %d after restart: %v", i, err)
		}
		acked += len(chunk)
		// Kill right after the acknowledgement: the chunk is kept.
		srv.kill9(t)
		srv = startServe(t, bin, state)
		c = login(srv)
		got := uploadState(t, c, br.ID)
		if acked == len(content) {
			if !got.Complete {
				t.Fatalf("after the last chunk and kill: %+v, want complete", got)
			}
		} else if want := 100 * float64(acked) / float64(len(content)); got.Complete || got.Progress != want {
			t.Fatalf("after chunk %d acknowledged and kill: %+v, want progress %g", i, got, want)
		}
	}
	// The complete file serves exactly the uploaded content.
	resp, err := http.Get(strings.TrimSuffix(srv.url, "MAAS/") + "MAAS/boot-resources/" + sum(content)[:7] + "/custom/amd64/generic/crashimg/uploaded/root-dd.raw")
	if err != nil {
		t.Fatal(err)
	}
	served, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if sum(served) != sum(content) {
		t.Fatalf("served content sha256 %s, want %s", sum(served), sum(content))
	}

	// Deploy: kill after each acknowledged step; the status survives.
	m, err := c.Machines.Create(&entity.MachineParams{Architecture: "amd64/generic", Hostname: "crash1", MACAddresses: []string{"52:54:00:aa:bb:cc"}},
		map[string]any{"commission": "false"})
	if err != nil {
		t.Fatalf("create machine: %v", err)
	}
	steps := []struct {
		name string
		do   func(*client.Client) error
		want string
	}{
		{"create", func(*client.Client) error { return nil }, "Ready"},
		{"allocate", func(c *client.Client) error {
			_, err := c.Machines.Allocate(&entity.MachineAllocateParams{SystemID: m.SystemID})
			return err
		}, "Allocated"},
		{"deploy", func(c *client.Client) error {
			_, err := c.Machine.Deploy(m.SystemID, &entity.MachineDeployParams{DistroSeries: "crashimg"})
			return err
		}, "Deploying"},
	}
	for _, st := range steps {
		if err := st.do(c); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		srv.kill9(t)
		srv = startServe(t, bin, state)
		c = login(srv)
		got, err := c.Machine.Get(m.SystemID)
		if err != nil {
			t.Fatalf("after %s and kill: %v", st.name, err)
		}
		if got.StatusName != st.want {
			t.Errorf("after %s and kill: status %q, want %q", st.name, got.StatusName, st.want)
		}
	}
	got, _ := c.Machine.Get(m.SystemID)
	if got.OSystem != "custom" || got.DistroSeries != "crashimg" || got.Owner != "admin" {
		t.Errorf("deployed machine after restarts: os %q series %q owner %q", got.OSystem, got.DistroSeries, got.Owner)
	}
	ev, err := c.Events.Get(&entity.EventParams{ID: m.SystemID, Level: "DEBUG"})
	if err != nil || ev.Count == 0 {
		t.Errorf("events after restarts: %+v, %v", ev, err)
	}

	// A second instance on the same state directory is refused.
	out, err := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--state", state).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "state directory is in use by another maasemu") {
		t.Errorf("second instance: err %v, output %s", err, out)
	}

	// SIGTERM shuts down cleanly and releases the state directory.
	srv.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-srv.done:
		if err != nil {
			t.Errorf("serve after SIGTERM: %v\n%s", err, srv.stderr)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("serve did not stop on SIGTERM")
	}
	srv = startServe(t, bin, state)
	srv.cmd.Process.Signal(syscall.SIGINT)
	if err := <-srv.done; err != nil {
		t.Errorf("serve after SIGINT: %v", err)
	}
}
