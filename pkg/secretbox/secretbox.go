// Package secretbox encrypts the secrets FleetACS must be able to read back,
// such as the passwords CPEs present to the ACS and the ones the ACS
// presents to CPEs for Connection Requests: Digest authentication needs the
// clear text, so they cannot be hashed, and they must not sit in clear in a
// database file or a backup (docs/security.md).
//
// Secrets are sealed with AES-256-GCM under a keyring: several named keys,
// the first of which seals; every key opens what it sealed. The key ID is
// stored beside each sealed secret, so keys can be rotated: put a new key
// first, keep the old ones until everything sealed with them was sealed
// again (stores do that when they start), then drop them. Each secret is
// bound to where it is stored (associated data such as tenant, device and
// field), so a sealed value copied onto another row does not open.
//
// A keyring comes from a key file, one key a line:
//
//	# comment
//	[ID ]BASE64
//
// where BASE64 encodes 32 random bytes (`head -c 32 /dev/urandom | base64`)
// and ID, 1 to 32 characters from [A-Za-z0-9._-], defaults to "k" and the
// first 8 hex digits of the key's SHA-256. File reads the file when Load
// is called, never before, and can create it (0600, in a 0700 directory)
// with one fresh key when it does not exist: the embedded default needs no
// setup, and the key stays next to the data it protects, so backups of
// the data directory must include it (and be protected like it).
package secretbox

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

// KeySize is the size of a key: AES-256.
const KeySize = 32

// maxSealed bounds what Open accepts: secrets are passwords, short.
const maxSealed = 64 << 10

// Errors callers branch on.
var (
	// ErrUnknownKey: the secret was sealed with a key the keyring does not
	// hold (removed too early, or another install's key).
	ErrUnknownKey = errors.New("secret sealed with a key that is not configured")
	// ErrOpen: the sealed secret is corrupt, or was moved to another
	// place than the one it was sealed for.
	ErrOpen = errors.New("sealed secret does not open")
	// ErrNotLoaded: Load has not run (or failed).
	ErrNotLoaded = errors.New("secrets keyring not loaded")
)

// Key is one named key.
type Key struct {
	ID     string
	Secret []byte
}

// Keyring seals with its first key and opens with any of them. It is safe
// for concurrent use once loaded.
type Keyring struct {
	path   string
	create bool

	mu     sync.RWMutex
	loaded bool
	active string
	aeads  map[string]cipher.AEAD
	ids    []string
}

// New returns a loaded keyring of keys; the first seals.
func New(keys ...Key) (*Keyring, error) {
	k := &Keyring{}
	if err := k.set(keys); err != nil {
		return nil, err
	}
	return k, nil
}

// File returns a keyring read from path by Load. With create, Load writes a
// file with one fresh key when path does not exist. It does no I/O.
func File(path string, create bool) *Keyring {
	return &Keyring{path: path, create: create}
}

// Path is the key file of a keyring from File; "" otherwise.
func (k *Keyring) Path() string { return k.path }

// Load reads the key file (creating it when allowed and missing); created
// reports that it did. Loading a loaded keyring does nothing.
func (k *Keyring) Load() (created bool, err error) {
	k.mu.Lock()
	loaded := k.loaded
	k.mu.Unlock()
	if loaded {
		return false, nil
	}
	if k.path == "" {
		return false, errors.New("load secrets keyring: no key file")
	}
	data, err := os.ReadFile(k.path)
	if errors.Is(err, fs.ErrNotExist) && k.create {
		if data, err = createKeyFile(k.path); err == nil {
			created = true
		} else if errors.Is(err, fs.ErrExist) {
			// Another process created it meanwhile.
			data, err = os.ReadFile(k.path)
		}
	}
	if err != nil {
		return false, fmt.Errorf("load secrets key file: %w", err)
	}
	keys, err := Parse(data)
	if err != nil {
		return false, fmt.Errorf("load secrets key file %s: %w", k.path, err)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.loaded {
		return false, nil
	}
	if err := k.set(keys); err != nil {
		return false, fmt.Errorf("load secrets key file %s: %w", k.path, err)
	}
	return created, nil
}

func (k *Keyring) set(keys []Key) error {
	if len(keys) == 0 {
		return errors.New("no key")
	}
	aeads := make(map[string]cipher.AEAD, len(keys))
	ids := make([]string, 0, len(keys))
	for _, key := range keys {
		if !validID(key.ID) {
			return fmt.Errorf("key ID %q: want 1 to 32 characters from [A-Za-z0-9._-]", key.ID)
		}
		if len(key.Secret) != KeySize {
			return fmt.Errorf("key %s: %d bytes, want %d", key.ID, len(key.Secret), KeySize)
		}
		if _, dup := aeads[key.ID]; dup {
			return fmt.Errorf("key ID %s appears twice", key.ID)
		}
		block, err := aes.NewCipher(key.Secret)
		if err != nil {
			return fmt.Errorf("key %s: %w", key.ID, err)
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return fmt.Errorf("key %s: %w", key.ID, err)
		}
		aeads[key.ID] = aead
		ids = append(ids, key.ID)
	}
	k.aeads, k.ids, k.active, k.loaded = aeads, ids, ids[0], true
	return nil
}

// ActiveID is the ID of the key that seals; "" before Load.
func (k *Keyring) ActiveID() string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.active
}

// IDs lists the key IDs, the active one first.
func (k *Keyring) IDs() []string {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return append([]string(nil), k.ids...)
}

// Seal encrypts plaintext bound to aad with the active key. The result is
// a random nonce followed by the ciphertext and its tag.
func (k *Keyring) Seal(plaintext, aad []byte) (keyID string, sealed []byte, err error) {
	k.mu.RLock()
	id, aead := k.active, k.aeads[k.active]
	k.mu.RUnlock()
	if aead == nil {
		return "", nil, ErrNotLoaded
	}
	// Random 96-bit nonces: safe for far more secrets than one key will
	// ever seal (NIST SP 800-38D allows 2^32 per key).
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return "", nil, fmt.Errorf("seal secret: %w", err)
	}
	return id, aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Open decrypts what Seal returned for the same aad.
func (k *Keyring) Open(keyID string, sealed, aad []byte) ([]byte, error) {
	k.mu.RLock()
	loaded, aead := k.loaded, k.aeads[keyID]
	k.mu.RUnlock()
	switch {
	case !loaded:
		return nil, ErrNotLoaded
	case aead == nil:
		return nil, fmt.Errorf("key %q: %w", keyID, ErrUnknownKey)
	case len(sealed) < aead.NonceSize()+aead.Overhead() || len(sealed) > maxSealed:
		return nil, ErrOpen
	}
	n := aead.NonceSize()
	out, err := aead.Open(nil, sealed[:n], sealed[n:], aad)
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}

// SealString seals a string and encodes the result in base64, for text
// columns.
func (k *Keyring) SealString(plaintext string, aad []byte) (keyID, sealed string, err error) {
	id, b, err := k.Seal([]byte(plaintext), aad)
	if err != nil {
		return "", "", err
	}
	return id, base64.StdEncoding.EncodeToString(b), nil
}

// OpenString opens what SealString returned.
func (k *Keyring) OpenString(keyID, sealed string, aad []byte) (string, error) {
	b, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return "", ErrOpen
	}
	out, err := k.Open(keyID, b, aad)
	if err != nil {
		return "", err
	}
	return string(out), nil
}

// AAD joins the parts that say where a secret is stored into associated
// data, unambiguously (each part is length-prefixed).
func AAD(parts ...string) []byte {
	var b []byte
	for _, p := range parts {
		b = fmt.Appendf(b, "%d:", len(p))
		b = append(b, p...)
	}
	return b
}

// Parse reads a key file's contents.
func Parse(data []byte) ([]Key, error) {
	var keys []Key
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fields := strings.Fields(line)
		var id, enc string
		switch len(fields) {
		case 1:
			enc = fields[0]
		case 2:
			id, enc = fields[0], fields[1]
		default:
			return nil, fmt.Errorf("line %d: want [ID ]BASE64", n)
		}
		secret, err := base64.StdEncoding.DecodeString(enc)
		if err != nil {
			return nil, fmt.Errorf("line %d: key is not base64", n)
		}
		if len(secret) != KeySize {
			return nil, fmt.Errorf("line %d: key has %d bytes, want %d", n, len(secret), KeySize)
		}
		if id == "" {
			id = DefaultID(secret)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(keys) == 0 {
		return nil, errors.New("no key in the file")
	}
	return keys, nil
}

// DefaultID is the ID of a key written without one.
func DefaultID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return "k" + hex.EncodeToString(sum[:4])
}

func validID(id string) bool {
	if id == "" || len(id) > 32 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// GenerateKey returns a fresh random key with its default ID.
func GenerateKey() (Key, error) {
	secret := make([]byte, KeySize)
	if _, err := rand.Read(secret); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	return Key{ID: DefaultID(secret), Secret: secret}, nil
}

// FormatKeyFile is the contents of a key file holding keys, the first
// active.
func FormatKeyFile(keys ...Key) []byte {
	var b bytes.Buffer
	b.WriteString("# FleetACS secrets keys: one key a line, \"ID BASE64\" of 32 random bytes.\n")
	b.WriteString("# The first key encrypts; the others only decrypt what they encrypted.\n")
	b.WriteString("# Back this file up with the data it protects, and keep it as secret.\n")
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %s\n", k.ID, base64.StdEncoding.EncodeToString(k.Secret))
	}
	return b.Bytes()
}

// createKeyFile writes a key file with one fresh key, failing with
// fs.ErrExist when the file exists: a key is never overwritten.
func createKeyFile(path string) ([]byte, error) {
	key, err := GenerateKey()
	if err != nil {
		return nil, err
	}
	data := FormatKeyFile(key)
	if err := WriteFileExclusive(path, data); err != nil {
		return nil, err
	}
	return data, nil
}

// WriteFileExclusive creates path with data, readable by its owner only
// (0600, its directory created 0700 when missing), and fails with
// fs.ErrExist when path exists: secrets written this way are never
// overwritten. A partly written file is removed.
func WriteFileExclusive(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		_ = os.Remove(path)
		return err
	}
	return nil
}
