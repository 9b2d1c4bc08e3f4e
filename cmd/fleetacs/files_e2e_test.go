package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fleetacs/fleetacs/pkg/testenv"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	inventoryv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/inventory/v1"
	tasksv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/tasks/v1"
	"github.com/fleetacs/fleetacs/services/files"
	"github.com/fleetacs/fleetacs/services/files/blob/disk"
	"github.com/fleetacs/fleetacs/services/files/store/sqlitestore"
	"github.com/fleetacs/fleetacs/tools/cpesim/sim"
)

// signerFor signs download URLs with the key file a fleetacs process
// created in its data directory, as the process itself would.
func signerFor(t *testing.T, dataDir string) *files.Service {
	t.Helper()
	keys := files.URLKeyFile(filepath.Join(dataDir, "files-url.key"), false)
	if err := keys.Load(); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	svc, err := files.New(files.DefaultConfig(), files.Deps{
		Store: sqlitestore.New(sqlitestore.Config{Path: filepath.Join(dir, "unused.db")}), Blobs: disk.New(dir), URLKeys: keys,
	})
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

func fetch(t *testing.T, method, u string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx10(t), method, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// TestFilesEndToEnd: `fleetacs all` takes a firmware by HTTP PUT on its
// HTTP/JSON API, lists it, serves it to a device's signed URL on the CWMP
// listener (whole and by range), refuses unsigned requests there, and
// stops serving it once deleted.
func TestFilesEndToEnd(t *testing.T) {
	httpAddr := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	s := startSecured(t, "-server.api-http-addr="+httpAddr)
	base := "http://" + httpAddr
	fw := bytes.Repeat([]byte("FIRMWARE-5.0-"), 100_000)
	sum := sha256.Sum256(fw)
	q := url.Values{"type": {"1 Firmware Upgrade Image"}, "version": {"5.0"}, "product_class": {"HGW"}, "sha256": {hex.EncodeToString(sum[:])}, "tenant": {"default"}}
	putFile(t, base+"/v1/files/fw-5.0.bin?"+q.Encode(), s.admin, fw)
	code, m := httpCall(t, "GET", base+"/v1/tenants/default/files?productClass=HGW", s.admin, nil)
	list, _ := m["files"].([]any)
	if code != 200 || len(list) != 1 {
		t.Fatalf("list: %d %v", code, m)
	}
	f := list[0].(map[string]any)
	id := f["id"].(string)
	if f["sha256"] != hex.EncodeToString(sum[:]) || f["size"] != fmt.Sprint(len(fw)) {
		t.Fatalf("record: %v", f)
	}
	code, m = httpCall(t, "GET", base+"/v1/tenants/default/files/"+id, "", nil)
	expectHTTP(t, "get without a token", code, m, http.StatusUnauthorized, "CREDENTIALS_MISSING")

	path, err := signerFor(t, s.dir).SignPath("default", id, "00D09E-HGW-E2E1", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	gw := "http://" + s.cwmp
	if resp, body := fetch(t, "GET", gw+path); resp.StatusCode != 200 || !bytes.Equal(body, fw) {
		t.Fatalf("download through the gateway: %d, %d bytes", resp.StatusCode, len(body))
	}
	if resp, body := fetch(t, "GET", gw+path, "Range", "bytes=13-25"); resp.StatusCode != 206 || !bytes.Equal(body, fw[13:26]) {
		t.Fatalf("range through the gateway: %d, %q", resp.StatusCode, body)
	}
	if resp, body := fetch(t, "GET", gw+"/files/default/"+id); resp.StatusCode != 403 || bytes.Contains(body, []byte("FIRMWARE")) {
		t.Fatalf("unsigned download: %d", resp.StatusCode)
	}
	// CWMP is still served beside it.
	if resp, _ := fetch(t, "GET", gw+"/"); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET / on the CWMP listener: %d", resp.StatusCode)
	}
	code, m = httpCall(t, "DELETE", base+"/v1/tenants/default/files/"+id, s.admin, nil)
	if code != 200 {
		t.Fatalf("delete: %d %v", code, m)
	}
	if resp, _ := fetch(t, "GET", gw+path); resp.StatusCode != 404 {
		t.Fatalf("download of a deleted file: %d", resp.StatusCode)
	}
}

// TestFirmwareDownloadEndToEnd: a firmware uploaded to `fleetacs all` is
// fetched by a cpesim device through /files/ on the CWMP listener, after
// a Download task carrying the URL the files API signed for it; the first
// attempt is cut part way and resumed with a Range request, the checksum
// is checked, and the task ends done with the device on the new version.
// A Download of the same file with a URL signed for another device ends
// in a transfer fault: the device got 403.
func TestFirmwareDownloadEndToEnd(t *testing.T) {
	s := startSecured(t, "-notifier.allow-loopback=true", "-tasks.sweep-interval=100ms")
	sm, err := sim.New(sim.Config{URL: "http://" + s.cwmp + "/", Model: sim.TR181,
		Devices: 2, Seed: 21, SerialPrefix: "FW", BootStorm: true, Concurrency: 2,
		Timeout: 30 * time.Second, ConnReq: sim.ConnReqPerDevice,
		TimeScale: 0.01, RebootTime: 50 * time.Millisecond, TransferTime: 50 * time.Millisecond,
		FetchTransfers: true, FetchInterruptAfter: 100_000,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	type result struct {
		sum sim.Summary
		err error
	}
	done := make(chan result, 1)
	go func() { sum, err := sm.Run(ctx); done <- result{sum, err} }()
	stopped := false
	stopSim := func() sim.Summary {
		stopped = true
		cancel()
		r := <-done
		if r.err != nil && ctx.Err() == nil {
			t.Errorf("cpesim: %v", r.err)
		}
		return r.sum
	}
	t.Cleanup(func() {
		if !stopped {
			stopSim()
		}
	})
	inv := inventoryv1.NewInventoryServiceClient(s.publicConn)
	var ids []string
	waitFor(t, 30*time.Second, func() error {
		list, err := inv.ListDevices(withToken(ctx10(t), s.admin), &inventoryv1.ListDevicesRequest{Tenant: "default"})
		if err != nil {
			return err
		}
		ids = ids[:0]
		for _, d := range list.GetDevices() {
			if !d.GetConnectionRequest().GetPasswordSet() {
				return fmt.Errorf("device %s has no connection-request credentials yet", d.GetId())
			}
			ids = append(ids, d.GetId())
		}
		if len(ids) != 2 {
			return fmt.Errorf("%d devices", len(ids))
		}
		return nil
	})

	// Upload by the gRPC stream, as fleetctl does.
	fw := bytes.Repeat([]byte("FW-7.1 "), 150_000)
	fc := filesv1.NewFilesServiceClient(s.publicConn)
	stream, err := fc.UploadFile(withToken(ctx10(t), s.admin))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(fw)
	if err := stream.Send(&filesv1.UploadFileRequest{Tenant: "default", Part: &filesv1.UploadFileRequest_Header{Header: &filesv1.UploadFileHeader{
		Name: "fw-7.1.bin", FileType: "1 Firmware Upgrade Image", Version: "7.1", ExpectedSha256: hex.EncodeToString(sum[:])}}}); err != nil {
		t.Fatal(err)
	}
	for off := 0; off < len(fw); off += 1 << 18 {
		if err := stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: fw[off:min(off+1<<18, len(fw))]}}); err != nil {
			t.Fatal(err)
		}
	}
	up, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	signed := func(device string) *filesv1.CreateDownloadUrlResponse {
		resp, err := fc.CreateDownloadUrl(withToken(ctx10(t), s.admin), &filesv1.CreateDownloadUrlRequest{
			Tenant: "default", Id: up.GetFile().GetId(), DeviceId: device, TtlSeconds: 600})
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	tasks := tasksv1.NewTasksServiceClient(s.publicConn)
	download := func(device, url string) *tasksv1.Task {
		resp, err := tasks.CreateTask(withToken(ctx10(t), s.admin), &tasksv1.CreateTaskRequest{Tenant: "default", DeviceId: device,
			Operation: &tasksv1.Operation{Kind: &tasksv1.Operation_Download{Download: &tasksv1.Download{
				FileType: "1 Firmware Upgrade Image", Url: url, FileSize: uint64(len(fw))}}},
			Options: &tasksv1.TaskOptions{ConnectionRequest: true}, WaitMs: 8000})
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetTask()
	}

	u := signed(ids[0])
	task := download(ids[0], u.GetUrl())
	wantState(t, task, tasksv1.TaskState_TASK_STATE_DONE)
	if p := param(t, inv, withToken(ctx10(t), s.admin), ids[0], "Device.DeviceInfo.SoftwareVersion"); p == nil || p.GetValue() != "fw-7.1" {
		t.Errorf("SoftwareVersion after the upgrade: %v", p)
	}
	// A URL re-targeted at the other device (its signature is the first
	// device's) gets 403: the device reports the transfer failed.
	re, err := url.Parse(u.GetUrl())
	if err != nil {
		t.Fatal(err)
	}
	q := re.Query()
	q.Set("d", ids[1])
	re.RawQuery = q.Encode()
	task = download(ids[1], re.String())
	wantState(t, task, tasksv1.TaskState_TASK_STATE_FAULT)
	if c := task.GetFault().GetCode(); c != 9012 {
		t.Errorf("fault %v, want the CPE's 9012 (file server refused)", task.GetFault())
	}
	// The first download was cut after 100,000 bytes and resumed with a
	// Range request; the refused one never got a byte to resume from.
	if sum := stopSim(); sum.DownloadsResumed != 1 || sum.TransfersCompleted != 2 {
		t.Errorf("cpesim: %d downloads resumed, %d transfers completed; want 1 and 2", sum.DownloadsResumed, sum.TransfersCompleted)
	}
}

// TestFilesDeviceAuthWired: with -files.device-auth=credentials the gateway
// checks the device's credentials on /files/: on this anonymous gateway a
// request without any vouches for no device (403, not the 503 of a files
// service without a checker), one with unknown credentials gets a
// challenge.
func TestFilesDeviceAuthWired(t *testing.T) {
	s := startSecured(t, "-files.device-auth=credentials")
	fc := filesv1.NewFilesServiceClient(s.publicConn)
	stream, err := fc.UploadFile(withToken(ctx10(t), s.admin))
	if err != nil {
		t.Fatal(err)
	}
	_ = stream.Send(&filesv1.UploadFileRequest{Tenant: "default", Part: &filesv1.UploadFileRequest_Header{Header: &filesv1.UploadFileHeader{
		Name: "cfg.xml", FileType: "3 Vendor Configuration File"}}})
	_ = stream.Send(&filesv1.UploadFileRequest{Part: &filesv1.UploadFileRequest_Chunk{Chunk: []byte("<config/>")}})
	up, err := stream.CloseAndRecv()
	if err != nil {
		t.Fatal(err)
	}
	u, err := fc.CreateDownloadUrl(withToken(ctx10(t), s.admin), &filesv1.CreateDownloadUrlRequest{Tenant: "default", Id: up.GetFile().GetId(), DeviceId: "00D09E-X-1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := fetch(t, "GET", u.GetUrl()); resp.StatusCode != 403 || strings.Contains(string(body), "config") {
		t.Fatalf("without credentials: %d %q", resp.StatusCode, body)
	}
	if resp, _ := fetch(t, "GET", u.GetUrl(), "Authorization", "Basic eDp5"); resp.StatusCode != 401 && resp.StatusCode != 403 {
		t.Fatalf("unknown credentials: %d", resp.StatusCode)
	}
}

// putFile uploads body with an HTTP PUT to url (a /v1/files/ URL with its
// query) and fails the test unless the file is created.
func putFile(t *testing.T, url, token string, body []byte) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx10(t), "PUT", url, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT: %d %s", resp.StatusCode, b)
	}
}
