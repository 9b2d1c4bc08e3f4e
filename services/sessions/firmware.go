package sessions

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"

	"github.com/fleetacs/fleetacs/pkg/provisioning"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

// A preset's firmware version in sessions (docs/provisioning.md,
// "Firmware"). When the matched presets ask for a version the device does
// not report, the planner asks the files service for the file of that
// version for the device's product class and a URL signed for the device
// (I/O belongs to Plan), and the preset operation sends the Download.
// What must outlive the session is kept in the device's presets
// fingerprint, which sessions read anyway: "s<rev>t<tags digest>~fw<unix>.<attempt>"
// says that no firmware request is made before that time (a transfer in
// flight, or a back-off after a failure or a missing file), and how many
// attempts were made. The session that brings the new version (its boot
// matches the presets again) records the plain fingerprint.

// FirmwareFiles finds a firmware file for a device and signs its URL
// (fleetacs.files.v1.FilesInternalService).
type FirmwareFiles interface {
	// ResolveFile returns the file of fileType and version for a device
	// of productClass (one naming the class, else one for any class) and
	// its URL signed for the device; found false when there is none.
	ResolveFile(ctx context.Context, tenant, device, productClass, fileType, version string) (found bool, url string, size uint64, err error)
}

// GRPCFirmwareFiles is FirmwareFiles over the files service's internal API.
type GRPCFirmwareFiles struct {
	c filesv1.FilesInternalServiceClient
}

// NewGRPCFirmwareFiles returns the adapter over a connection to the files
// service's internal listener (or the process's own).
func NewGRPCFirmwareFiles(cc grpc.ClientConnInterface) *GRPCFirmwareFiles {
	return &GRPCFirmwareFiles{c: filesv1.NewFilesInternalServiceClient(cc)}
}

// firmwareURLTTL is the lifetime of a preset Download's URL: the CPE may
// fetch it a while after it accepted the Download.
const firmwareURLTTL = 24 * time.Hour

// ResolveFile implements FirmwareFiles.
func (g *GRPCFirmwareFiles) ResolveFile(ctx context.Context, tenant, device, productClass, fileType, version string) (bool, string, uint64, error) {
	resp, err := g.c.ResolveFile(ctx, &filesv1.ResolveFileRequest{Tenant: tenant, DeviceId: device, ProductClass: productClass,
		FileType: fileType, Version: version, TtlSeconds: uint32(firmwareURLTTL / time.Second)}, treeCallOptions...)
	if err != nil {
		return false, "", 0, fmt.Errorf("resolve firmware %s: %w", version, err)
	}
	return resp.GetFound(), resp.GetUrl(), resp.GetFile().GetSize(), nil
}

// firmwareFileType is the CWMP file type of a preset's firmware.
const firmwareFileType = "1 Firmware Upgrade Image"

// Waits between firmware attempts.
const (
	// firmwareTransferWait is how long a Download the CPE accepted is
	// awaited (its TransferComplete and reboot) before another is sent.
	firmwareTransferWait = time.Hour
	// firmwareBackoff is the wait after the first failure (or missing
	// file), doubled at each further attempt up to firmwareBackoffMax.
	firmwareBackoff    = 15 * time.Minute
	firmwareBackoffMax = 24 * time.Hour
)

// firmwareBackoffAfter is the wait after attempt n (1, 2, ...) failed.
func firmwareBackoffAfter(n int) time.Duration {
	d := firmwareBackoff
	for i := 1; i < n && d < firmwareBackoffMax; i++ {
		d *= 2
	}
	return min(d, firmwareBackoffMax)
}

// firmwareWait is the firmware state a fingerprint carries.
type firmwareWait struct {
	Until   time.Time `json:"until,omitzero"`
	Attempt int       `json:"attempt,omitempty"`
}

const fwMark = provisioning.FingerprintFirmwareWait

// splitFingerprint returns a recorded fingerprint's preset part (without
// the refusal marker) and its firmware wait (zero when none, or
// unreadable).
func splitFingerprint(fp string) (string, firmwareWait) {
	base, rest, ok := strings.Cut(fp, fwMark)
	base = strings.TrimSuffix(base, provisioning.FingerprintRefused)
	if !ok {
		return base, firmwareWait{}
	}
	until, attempt, _ := strings.Cut(rest, ".")
	u, err1 := strconv.ParseInt(until, 10, 64)
	n, err2 := strconv.Atoi(attempt)
	if err1 != nil || err2 != nil || n < 0 || n > 1000 {
		return base, firmwareWait{}
	}
	return base, firmwareWait{Until: time.Unix(u, 0).UTC(), Attempt: n}
}

// withWait is the fingerprint to record: fp, and the wait if any.
func withWait(fp string, w firmwareWait) string {
	if fp == "" || w.Until.IsZero() {
		return fp
	}
	return fp + fwMark + strconv.FormatInt(w.Until.Unix(), 10) + "." + strconv.Itoa(w.Attempt)
}

// firmwareCommandKey is the CommandKey of a preset's Download: it names
// the preset's revision (hashed: a CommandKey is at most 32 characters).
func firmwareCommandKey(preset string, revision uint64) string {
	h := sha256.Sum256([]byte(preset + "@" + strconv.FormatUint(revision, 10)))
	return firmwareKeyPrefix + hex.EncodeToString(h[:8])
}

// firmwareKeyPrefix starts the CommandKey of every preset Download.
const firmwareKeyPrefix = "fleetacs-fw-"

// firmwareStep is the firmware part of a preset operation.
type firmwareStep struct {
	Preset   string `json:"preset"`
	Revision uint64 `json:"revision"`
	Version  string `json:"version"`
	// URL and Size are the file's, resolved by the planner; empty URL:
	// nothing to send (waiting, or no file).
	URL  string `json:"url,omitempty"`
	Size uint64 `json:"size,omitempty"`
	// Wait is what the fingerprint records after the session.
	Wait firmwareWait `json:"wait,omitzero"`
	// Event is the status to publish ("download", "no_file", "failed",
	// "upgraded"), Detail its words.
	Event  string `json:"event,omitempty"`
	Detail string `json:"detail,omitempty"`
}

// FileURL implements provisioning.Firmware over what the planner
// resolved: the operation does no I/O.
func (f *firmwareStep) FileURL(_ string, _ *provisioning.Device, version string) (string, uint64, string, error) {
	switch {
	case f == nil || version != f.Version:
		return "", 0, "", errors.New("not resolved in this session")
	case f.URL == "":
		return "", 0, "", errors.New(f.Detail)
	}
	return f.URL, f.Size, firmwareFileType, nil
}
