package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/apiauth/apiauthtest"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	authv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/auth/v1"
	"github.com/fleetacs/fleetacs/services/files"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
	"github.com/fleetacs/fleetacs/services/files/store/sqlitestore"
)

// filesServer is the real files service (SQLite and a directory) behind
// the real authenticator.
type filesServer struct {
	addr                     string
	operator, viewer, admin2 string
}

func newFilesServer(t *testing.T) *filesServer {
	t.Helper()
	dir := t.TempDir()
	key, _ := secretbox.GenerateKey()
	keys, _ := files.NewURLKeys(key)
	cfg := files.DefaultConfig()
	cfg.BaseURL = "http://cpe.example.net:7547"
	svc, err := files.New(cfg, files.Deps{
		Store: sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "files.db")}), Blobs: disk.New(filepath.Join(dir, "blobs")),
		URLKeys: keys, CallerTenants: apiauth.CallerTenants,
		Requester: func(ctx context.Context) string { p, _ := apiauth.FromContext(ctx); return p.ID },
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	store := apiauthtest.NewMemoryStore()
	auth := apiauth.NewAuthenticator(apiauth.Config{}, apiauth.Options{Tokens: store})
	s := &filesServer{addr: serveWith(t, func(g *grpc.Server) { svc.RegisterPublic(g) }, auth.ServerOptions()...)}
	issue := func(role authv1.Role) string {
		tok, _, err := apiauth.IssueToken(t.Context(), store, apiauth.TokenRecord{Role: role, Tenants: []string{"default"}, Created: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	s.operator, s.viewer = issue(authv1.Role_ROLE_OPERATOR), issue(authv1.Role_ROLE_VIEWER)
	return s
}

func TestFilesUploadListGetDelete(t *testing.T) {
	cleanEnv(t)
	s := newFilesServer(t)
	t.Setenv(envAddr, s.addr)
	t.Setenv(envToken, s.operator)
	dir := t.TempDir()
	fw := filepath.Join(dir, "hgw-2.1.bin")
	data := bytes.Repeat([]byte("firmware "), 200_000) // several chunks
	if err := os.WriteFile(fw, data, 0o600); err != nil {
		t.Fatal(err)
	}
	r := fleetctl(t, "files", "upload", fw, "--type", "firmware", "--version", "2.1", "--product-class", "HGW", "--product-class", "HGW2", "-o", "json")
	wantOK(t, r)
	var f map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &f); err != nil {
		t.Fatalf("upload -o json: %v\n%s", err, r.stdout)
	}
	id, _ := f["id"].(string)
	if f["name"] != "hgw-2.1.bin" || f["fileType"] != "1 Firmware Upgrade Image" || f["size"] != "1800000" || id == "" {
		t.Fatalf("uploaded: %v", f)
	}
	r = fleetctl(t, "files", "upload", fw, "-type", "firmware", "-version", "2.2", "-name", "hgw-2.2.bin", "-o", "id")
	wantOK(t, r)
	id2 := strings.TrimSpace(r.stdout)
	if len(id2) != 26 || strings.Count(r.stdout, "\n") != 1 {
		t.Fatalf("upload -o id: %q", r.stdout)
	}
	wantOK(t, fleetctl(t, "files", "delete", id2))
	// From stdin, under a name.
	r = fleetctlIn(t, "config bytes", "files", "upload", "-", "-type", "config", "-name", "ont.cfg")
	wantOK(t, r)
	if !strings.Contains(r.stdout, "Name:") || !strings.Contains(r.stdout, "ont.cfg") || !strings.Contains(r.stdout, "3 Vendor Configuration File") {
		t.Errorf("upload text:\n%s", r.stdout)
	}

	r = fleetctl(t, "files", "list", "-token", s.viewer)
	wantOK(t, r)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[2], id) || !strings.Contains(lines[2], "HGW,HGW2") {
		t.Errorf("list:\n%s", r.stdout)
	}
	r = fleetctl(t, "files", "list", "-type", "firmware", "-o", "json")
	wantOK(t, r)
	var listed []map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &listed); err != nil || len(listed) != 1 || listed[0]["id"] != id {
		t.Errorf("list -type firmware -o json: %v %s", err, r.stdout)
	}
	r = fleetctl(t, "files", "get", id)
	wantOK(t, r)
	if !strings.Contains(r.stdout, "SHA-256:") || !strings.Contains(r.stdout, f["sha256"].(string)) {
		t.Errorf("get:\n%s", r.stdout)
	}

	// Failures: one line on stderr, status 1.
	wantFail(t, fleetctl(t, "files", "upload", fw, "-type", "firmware", "-version", "2.1"),
		"fleetctl: files upload: already exists: the tenant has a file with this name (FILE_ALREADY_EXISTS)")
	wantFail(t, fleetctl(t, "files", "delete", id, "-token", s.viewer),
		"fleetctl: files delete "+id+": permission denied: role viewer may not call /fleetacs.files.v1.FilesService/DeleteFile (ROLE_FORBIDDEN)")
	r = fleetctl(t, "files", "upload", filepath.Join(dir, "missing.bin"), "-type", "firmware", "-version", "1")
	if r.code != ExitFailure || !strings.HasPrefix(r.stderr, "fleetctl: files upload: open ") {
		t.Errorf("missing file: %d %q", r.code, r.stderr)
	}
	if r := fleetctl(t, "files", "upload", fw); r.code != ExitUsage {
		t.Errorf("upload without -type: %d", r.code)
	}

	r = fleetctl(t, "files", "url", id, "00D09E-HGW-SN1", "-ttl", "1h")
	wantOK(t, r)
	if !strings.HasPrefix(r.stdout, "http://cpe.example.net:7547/files/default/"+id+"/hgw-2.1.bin?") || strings.Count(r.stdout, "\n") != 1 {
		t.Errorf("url: %q", r.stdout)
	}

	r = fleetctl(t, "files", "delete", id)
	wantOK(t, r)
	if r.stdout != "deleted "+id+"\n" {
		t.Errorf("delete: %q", r.stdout)
	}
	wantFail(t, fleetctl(t, "files", "get", id), "fleetctl: files get "+id+": not found: file not found (FILE_NOT_FOUND)")
}

func TestFilesHelpGolden(t *testing.T) {
	helpGolden(t, "FilesHelpGolden", "../../testdata/help-files.txt", "files", "upload", "list", "get", "url", "delete")
}
