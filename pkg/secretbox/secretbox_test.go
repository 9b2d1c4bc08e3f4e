package secretbox_test

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fleetacs/fleetacs/pkg/secretbox"
)

func mustKey(t *testing.T) secretbox.Key {
	t.Helper()
	k, err := secretbox.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealOpen(t *testing.T) {
	k1, k2 := mustKey(t), mustKey(t)
	old, err := secretbox.New(k1)
	if err != nil {
		t.Fatal(err)
	}
	aad := secretbox.AAD("default", "dev-1", "cpe")
	id, sealed, err := old.Seal([]byte("s3cret"), aad)
	if err != nil {
		t.Fatal(err)
	}
	if id != k1.ID {
		t.Errorf("sealed with %s, want %s", id, k1.ID)
	}
	if bytes.Contains(sealed, []byte("s3cret")) {
		t.Fatal("sealed bytes contain the clear text")
	}
	_, again, _ := old.Seal([]byte("s3cret"), aad)
	if bytes.Equal(sealed, again) {
		t.Error("two seals of one secret are equal: nonces repeat")
	}

	// Rotation: a keyring with a new active key still opens the old one's.
	rotated, err := secretbox.New(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.ActiveID() != k2.ID {
		t.Errorf("active %s, want %s", rotated.ActiveID(), k2.ID)
	}
	got, err := rotated.Open(id, sealed, aad)
	if err != nil || string(got) != "s3cret" {
		t.Fatalf("open with the rotated keyring: %q, %v", got, err)
	}

	// A keyring without the sealing key cannot open it.
	onlyNew, _ := secretbox.New(k2)
	if _, err := onlyNew.Open(id, sealed, aad); !errors.Is(err, secretbox.ErrUnknownKey) {
		t.Errorf("open with an unknown key: %v, want ErrUnknownKey", err)
	}
	// Moved to another device or field, or tampered with: refused.
	for name, aad2 := range map[string][]byte{
		"other device": secretbox.AAD("default", "dev-2", "cpe"),
		"other field":  secretbox.AAD("default", "dev-1", "cr"),
		"ambiguous":    secretbox.AAD("default", "dev-1c", "pe"),
	} {
		if _, err := old.Open(id, sealed, aad2); !errors.Is(err, secretbox.ErrOpen) {
			t.Errorf("%s: %v, want ErrOpen", name, err)
		}
	}
	bad := bytes.Clone(sealed)
	bad[len(bad)-1] ^= 1
	if _, err := old.Open(id, bad, aad); !errors.Is(err, secretbox.ErrOpen) {
		t.Errorf("tampered: %v, want ErrOpen", err)
	}
	if _, err := old.Open(id, sealed[:5], aad); !errors.Is(err, secretbox.ErrOpen) {
		t.Errorf("truncated: %v, want ErrOpen", err)
	}

	// The string forms round-trip too.
	sid, s, err := rotated.SealString("pässword", aad)
	if err != nil || sid != k2.ID || strings.Contains(s, "pässword") {
		t.Fatalf("SealString: %s %q %v", sid, s, err)
	}
	if p, err := rotated.OpenString(sid, s, aad); err != nil || p != "pässword" {
		t.Errorf("OpenString: %q, %v", p, err)
	}
	if _, err := rotated.OpenString(sid, "!!not base64", aad); !errors.Is(err, secretbox.ErrOpen) {
		t.Errorf("OpenString of junk: %v", err)
	}
}

func TestFileCreatesOnceWithPrivateModes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "secrets.key")
	k := secretbox.File(path, true)
	if _, _, err := k.Seal([]byte("x"), nil); !errors.Is(err, secretbox.ErrNotLoaded) {
		t.Fatalf("seal before Load: %v", err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("File did I/O before Load: %v", err)
	}
	created, err := k.Load()
	if err != nil || !created {
		t.Fatalf("Load: created %v, %v", created, err)
	}
	for p, want := range map[string]fs.FileMode{path: 0o600, dir: 0o700} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode %o, want %o", p, got, want)
		}
	}
	id, sealed, err := k.Seal([]byte("pw"), nil)
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	// A second keyring on the same file reads the same key and never
	// rewrites the file.
	k2 := secretbox.File(path, true)
	if created, err := k2.Load(); err != nil || created {
		t.Fatalf("second Load: created %v, %v", created, err)
	}
	if got, err := k2.Open(id, sealed, nil); err != nil || string(got) != "pw" {
		t.Fatalf("open with the reloaded key: %q, %v", got, err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.Equal(before, after) {
		t.Error("key file rewritten")
	}

	// Without create, a missing file is an error naming it.
	_, err = secretbox.File(filepath.Join(dir, "missing.key"), false).Load()
	if err == nil || !strings.Contains(err.Error(), "missing.key") {
		t.Errorf("Load of a missing file: %v", err)
	}
}

func TestParse(t *testing.T) {
	k := mustKey(t)
	good := string(secretbox.FormatKeyFile(k))
	keys, err := secretbox.Parse([]byte(good))
	if err != nil || len(keys) != 1 || keys[0].ID != k.ID || !bytes.Equal(keys[0].Secret, k.Secret) {
		t.Fatalf("Parse(FormatKeyFile): %v, %v", keys, err)
	}
	// A bare key gets its default ID.
	bare := strings.Fields(strings.Split(good, "\n")[3])[1]
	keys, err = secretbox.Parse([]byte("\n  " + bare + "  \n"))
	if err != nil || keys[0].ID != secretbox.DefaultID(k.Secret) {
		t.Fatalf("Parse of a bare key: %v, %v", keys, err)
	}
	for name, in := range map[string]string{
		"empty":       "# nothing\n\n",
		"short key":   "k1 c2hvcnQ=\n",
		"not base64":  "k1 ****\n",
		"three words": "k1 " + bare + " extra\n",
	} {
		if _, err := secretbox.Parse([]byte(in)); err == nil {
			t.Errorf("%s: parsed", name)
		}
	}
	if _, err := secretbox.New(secretbox.Key{ID: "bad id", Secret: k.Secret}); err == nil {
		t.Error("key ID with a space accepted")
	}
	if _, err := secretbox.New(k, k); err == nil {
		t.Error("duplicate key IDs accepted")
	}
}

func BenchmarkOpen(b *testing.B) {
	k, _ := secretbox.GenerateKey()
	kr, _ := secretbox.New(k)
	aad := secretbox.AAD("default", "00D09E-IGD-SN000001", "cr")
	id, sealed, _ := kr.Seal([]byte("a-connection-request-password"), aad)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := kr.Open(id, sealed, aad); err != nil {
			b.Fatal(err)
		}
	}
}
