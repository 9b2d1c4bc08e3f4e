package check

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// dockerfile is the Dockerfile read as instructions: continuation lines
// joined, comments dropped, and the stage each belongs to.
type dockerInstr struct {
	stage int    // 0 for the first FROM's stage
	cmd   string // upper case: FROM, COPY, RUN, ...
	args  string
}

func readDockerfile(t *testing.T, path string) []dockerInstr {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []dockerInstr
	stage := -1
	var cur string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if cur == "" && (line == "" || strings.HasPrefix(line, "#")) {
			continue
		}
		if strings.HasPrefix(line, "#") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cur += s + " "
			continue
		}
		cur += line
		cmd, args, _ := strings.Cut(cur, " ")
		cmd = strings.ToUpper(cmd)
		if cmd == "FROM" {
			stage++
		}
		out = append(out, dockerInstr{stage, cmd, strings.TrimSpace(args)})
		cur = ""
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The Dockerfile cannot be built here (no Docker engine); this checks what
// can be read from it: every module of go.work is copied before the
// download (a new module would otherwise break docker build only), every
// binary is built static, trimmed, and the final stage runs fleetacs as
// user 65532 on a distroless base, like deploy/imagebuild's image.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	instrs := readDockerfile(t, filepath.Join(root, "Dockerfile"))
	last := instrs[len(instrs)-1].stage
	if last < 1 {
		t.Fatalf("%d stages, want a multi-stage build", last+1)
	}

	work, err := os.ReadFile(filepath.Join(root, "go.work"))
	if err != nil {
		t.Fatal(err)
	}
	var copied []string
	var build string
	for _, in := range instrs {
		if in.stage == 0 && in.cmd == "COPY" {
			copied = append(copied, strings.Fields(in.args)...)
		}
		if in.stage == 0 && in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			build += in.args + "\n"
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^\s+\./(\S+)\s*$`).FindAllStringSubmatch(string(work), -1) {
		for _, f := range []string{"go.mod", "go.sum"} {
			if !slices.Contains(copied, m[1]+"/"+f) {
				t.Errorf("the build stage does not copy %s/%s (a module of go.work)", m[1], f)
			}
		}
	}
	for _, pkg := range []string{"./cmd/fleetacs", "./cmd/fleetctl", "./tools/cpesim"} {
		if !strings.Contains(build, pkg+" ") && !strings.Contains(build, pkg+"\n") {
			t.Errorf("the build stage does not build %s", pkg)
		}
	}
	var env string
	for _, in := range instrs {
		if in.stage == 0 && in.cmd == "ENV" {
			env += in.args + " "
		}
	}
	for _, want := range []string{"CGO_ENABLED=0", "-trimpath"} {
		if !strings.Contains(env, want) && !strings.Contains(build, want) {
			t.Errorf("the build does not set %s", want)
		}
	}

	final := map[string]string{}
	for _, in := range instrs {
		if in.stage == last {
			final[in.cmd] = in.args
		}
	}
	if !strings.HasPrefix(final["FROM"], "gcr.io/distroless/static") {
		t.Errorf("final base %q, want distroless/static", final["FROM"])
	}
	if final["USER"] != "65532:65532" {
		t.Errorf("USER %q, want 65532:65532", final["USER"])
	}
	if final["ENTRYPOINT"] != `["/usr/local/bin/fleetacs"]` {
		t.Errorf("ENTRYPOINT %s", final["ENTRYPOINT"])
	}
	if final["WORKDIR"] != "/var/lib/fleetacs" {
		t.Errorf("WORKDIR %q, want /var/lib/fleetacs (deploy/imagebuild's)", final["WORKDIR"])
	}
	// The ports the image build writes are those EXPOSE names.
	for _, p := range []string{"7547", "9100", "9300", "9301", "9380", "3478/udp"} {
		if !slices.Contains(strings.Fields(final["EXPOSE"]), p) {
			t.Errorf("EXPOSE %q lacks %s", final["EXPOSE"], p)
		}
	}
}
