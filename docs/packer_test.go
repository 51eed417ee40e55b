// Package docs_test runs the commands docs/packer.md gives packer-maas users: the
// post-processor's inline command and the CI pipelines' validate steps, against a good and
// a broken test image, checking validate's exit codes and the JUnit file.
package docs_test

import (
	"context"
	"encoding/xml"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/maasemu/maasemu/harness/lab/labtest"
)

// snippet returns the fenced code block that follows <!-- maasemu:tested NAME --> in
// packer.md.
func snippet(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("packer.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	marker := "<!-- maasemu:tested " + name + " -->"
	i := strings.Index(doc, marker)
	if i < 0 {
		t.Fatalf("packer.md has no %q", marker)
	}
	rest := doc[i+len(marker):]
	start := strings.Index(rest, "```")
	if start < 0 {
		t.Fatalf("no code block after %s", marker)
	}
	rest = rest[start+3:]
	rest = rest[strings.IndexByte(rest, '\n')+1:]
	end := strings.Index(rest, "\n```")
	if end < 0 {
		t.Fatalf("unterminated code block after %s", marker)
	}
	return rest[:end+1]
}

var (
	hclVariable = regexp.MustCompile(`(?s)variable "([a-z_]+)" \{.*?default\s*=\s*"([^"]*)"`)
	hclString   = regexp.MustCompile(`"((?:[^"\\]|\\.)*)"`)
	hclRef      = regexp.MustCompile(`\$\{var\.([a-z_]+)\}`)
)

// postProcessorScript is the inline script of the post-processor that runs maasemu,
// with packer's ${var.x} references replaced by vars, else the variables' defaults.
func postProcessorScript(t *testing.T, hcl string, vars map[string]string) string {
	t.Helper()
	defaults := map[string]string{}
	for _, m := range hclVariable.FindAllStringSubmatch(hcl, -1) {
		defaults[m[1]] = m[2]
	}
	blocks := strings.Split(hcl, `post-processor "shell-local"`)
	for _, b := range blocks[1:] {
		if !strings.Contains(b, "maasemu validate") {
			continue
		}
		open := strings.Index(b, "inline = [")
		closing := strings.Index(b, "]\n")
		if open < 0 || closing < open {
			t.Fatalf("the maasemu post-processor has no inline list:\n%s", b)
		}
		if !strings.Contains(b, `inline_shebang = "/bin/bash -e"`) {
			t.Errorf("the maasemu post-processor does not run under /bin/bash -e")
		}
		var lines []string
		for _, m := range hclString.FindAllStringSubmatch(b[open:closing], -1) {
			line := hclRef.ReplaceAllStringFunc(m[1], func(ref string) string {
				name := hclRef.FindStringSubmatch(ref)[1]
				if v, ok := vars[name]; ok {
					return v
				}
				v, ok := defaults[name]
				if !ok {
					t.Fatalf("the post-processor uses ${var.%s}, which the snippet does not declare and the test does not set", name)
				}
				return v
			})
			lines = append(lines, line)
		}
		return strings.Join(lines, "\n") + "\n"
	}
	t.Fatal("no shell-local post-processor runs maasemu validate")
	return ""
}

// env is what the commands run with: the built maasemu and its agent first on PATH.
type env struct {
	bin string
}

func setup(t *testing.T) (env, map[string]string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the documented commands are run with simulated machines here: needs root")
	}
	if testing.Short() {
		t.Skip("deploys images: not in -short")
	}
	agent := labtest.Agent(t)
	man, dir := labtest.TestImages(t)
	images := map[string]string{}
	for _, name := range []string{"good-tgz", "hooks-exit-1"} {
		im, ok := man.Image(name)
		if !ok {
			t.Fatalf("no test image %s", name)
		}
		images[name] = filepath.Join(dir, im.File)
	}
	bin := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(bin, "maasemu"), "./cmd/maasemu")
	build.Dir = labtest.ModuleRoot()
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building maasemu: %v\n%s", err, out)
	}
	a, err := os.ReadFile(agent)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "maasemu-agent"), a, 0o755); err != nil {
		t.Fatal(err)
	}
	return env{bin: bin}, images
}

// run runs script with bash -e in a new directory holding the image as name, and returns
// the exit code, the output and the directory.
func (e env) run(t *testing.T, script string, vars map[string]string) (int, string, string) {
	t.Helper()
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/bash", "-e", "-c", script)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "PATH="+e.bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("running the script: %v\n%s", err, out)
	}
	return code, string(out), work
}

type junitDoc struct {
	Tests    int `xml:"tests,attr"`
	Failures int `xml:"failures,attr"`
	Suites   []struct {
		Cases []struct {
			Name    string `xml:"name,attr"`
			Failure *struct {
				Message string `xml:"message,attr"`
				Type    string `xml:"type,attr"`
			} `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

func readJUnit(t *testing.T, path string) junitDoc {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("the JUnit file: %v", err)
	}
	var d junitDoc
	if err := xml.Unmarshal(b, &d); err != nil {
		t.Fatalf("the JUnit file does not parse: %v\n%s", err, b)
	}
	return d
}

// check runs a documented command on the good and the broken image: exit 0 with a JUnit
// file of passing cases, then exit 1 with a failure naming the curtin hook.
func check(t *testing.T, e env, images map[string]string, junitName string, run func(image string) (int, string, string)) {
	t.Helper()
	code, out, work := run(images["good-tgz"])
	if code != 0 {
		t.Fatalf("validate of the good image: exit %d, want 0\n%s", code, out)
	}
	d := readJUnit(t, filepath.Join(work, junitName))
	if d.Tests < 1 || d.Failures != 0 {
		t.Errorf("JUnit of the good image: %d tests, %d failures", d.Tests, d.Failures)
	}
	if _, err := os.Stat(filepath.Join(work, "maasemu-report", "report.html")); err != nil {
		t.Errorf("no report: %v", err)
	}
	code, out, work = run(images["hooks-exit-1"])
	if code != 1 {
		t.Fatalf("validate of the broken image: exit %d, want 1\n%s", code, out)
	}
	d = readJUnit(t, filepath.Join(work, junitName))
	failed := false
	for _, s := range d.Suites {
		for _, c := range s.Cases {
			if c.Failure != nil && strings.Contains(c.Failure.Message, "curtin-hooks") && c.Failure.Type == "deploy.hook-failed" {
				failed = true
			}
		}
	}
	if d.Failures < 1 || !failed {
		t.Errorf("JUnit of the broken image: %d failures, none of type deploy.hook-failed naming curtin-hooks:\n%+v", d.Failures, d)
	}
}

// The post-processor of packer.md, as packer runs it with -var maasemu_driver=sim -var
// maasemu_firmware=bios (simulated UEFI installs have a known bug; see scenarios/).
func TestPostProcessorCommand(t *testing.T) {
	e, images := setup(t)
	hcl := snippet(t, "post-processor")
	check(t, e, images, "maasemu-junit.xml", func(image string) (int, string, string) {
		script := postProcessorScript(t, hcl, map[string]string{"filename": image, "maasemu_driver": "sim", "maasemu_firmware": "bios"})
		if strings.Contains(script, "${") {
			t.Fatalf("unsubstituted reference in the script:\n%s", script)
		}
		return e.run(t, script, nil)
	})
}

// The validate steps of the GitHub Actions and GitLab CI pipelines of packer.md.
func TestPipelineSteps(t *testing.T) {
	e, images := setup(t)
	type step struct {
		name, script string
		env          map[string]string
	}
	var steps []step

	var gh struct {
		Jobs map[string]struct {
			Env   map[string]string `yaml:"env"`
			Steps []struct {
				Name string `yaml:"name"`
				Run  string `yaml:"run"`
				Uses string `yaml:"uses"`
				With map[string]string
			} `yaml:"steps"`
		} `yaml:"jobs"`
	}
	if err := yaml.Unmarshal([]byte(snippet(t, "github-actions")), &gh); err != nil {
		t.Fatalf("the GitHub Actions workflow is not YAML: %v", err)
	}
	for _, j := range gh.Jobs {
		reported := false
		for _, s := range j.Steps {
			if strings.Contains(s.Run, "maasemu validate") {
				steps = append(steps, step{"github-actions", s.Run, j.Env})
			}
			if strings.Contains(s.Uses, "junit") && s.With["report_paths"] == "maasemu-junit.xml" {
				reported = true
			}
		}
		if !reported {
			t.Errorf("the GitHub Actions job publishes no maasemu-junit.xml test report")
		}
	}

	var gl map[string]struct {
		Variables map[string]string `yaml:"variables"`
		Script    []string          `yaml:"script"`
		Artifacts struct {
			Reports struct {
				JUnit string `yaml:"junit"`
			} `yaml:"reports"`
		} `yaml:"artifacts"`
	}
	if err := yaml.Unmarshal([]byte(snippet(t, "gitlab-ci")), &gl); err != nil {
		t.Fatalf("the GitLab CI job is not YAML: %v", err)
	}
	for _, j := range gl {
		if j.Artifacts.Reports.JUnit != "maasemu-junit.xml" {
			t.Errorf("the GitLab CI job reports JUnit %q, want maasemu-junit.xml", j.Artifacts.Reports.JUnit)
		}
		steps = append(steps, step{"gitlab-ci", strings.Join(j.Script, "\n") + "\n", j.Variables})
	}
	if len(steps) != 2 {
		t.Fatalf("found %d validate steps, want one per pipeline", len(steps))
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			check(t, e, images, "maasemu-junit.xml", func(image string) (int, string, string) {
				vars := map[string]string{}
				for k, v := range s.env {
					vars[k] = v
				}
				// What the pipeline's runner would have: the image, and the choices the
				// snippet leaves to the environment (simulated BIOS machines here).
				vars["IMAGE"], vars["MAASEMU_DRIVER"], vars["FIRMWARE"] = image, "sim", "bios"
				vars["MAASEMU_CACHE"] = os.Getenv("MAASEMU_CACHE")
				if vars["MAASEMU_CACHE"] == "" {
					delete(vars, "MAASEMU_CACHE")
				}
				return e.run(t, s.script, vars)
			})
		})
	}
}
