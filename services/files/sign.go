package files

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	"github.com/fleetacs/fleetacs/pkg/recordid"
	"github.com/fleetacs/fleetacs/pkg/secretbox"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
)

// Signed download URLs (docs/files.md, "Who may download"):
//
//	<base>/files/<tenant>/<file id>?d=<device key>&e=<expiry, unix s>&k=<key id>&s=<signature>
//
// The signature is HMAC-SHA256, with the key k names, over the tenant, the
// file id, the device key and the expiry, each length-prefixed, in base64url
// without padding. It is compared in constant time. A URL past its expiry,
// or one whose device, tenant, file or expiry was changed, is refused with
// 403. The key file has the secrets key file's format (package secretbox):
// the first key signs, every key verifies, so that keys can be rotated.

// URLKeys is the keyring of download URL signatures.
type URLKeys struct {
	path   string
	create bool

	mu   sync.RWMutex
	keys []secretbox.Key
}

// URLKeyFile returns the keys read from path by Load; with create, Load
// writes a file with one fresh key when path does not exist. No I/O.
func URLKeyFile(path string, create bool) *URLKeys { return &URLKeys{path: path, create: create} }

// NewURLKeys returns loaded keys; the first signs.
func NewURLKeys(keys ...secretbox.Key) (*URLKeys, error) {
	if len(keys) == 0 {
		return nil, errors.New("no URL key")
	}
	for _, k := range keys {
		if len(k.Secret) != secretbox.KeySize || k.ID == "" {
			return nil, fmt.Errorf("URL key %q: want an id and %d bytes", k.ID, secretbox.KeySize)
		}
	}
	return &URLKeys{keys: keys}, nil
}

// Load reads the key file, creating it when allowed and missing. Loading
// loaded keys does nothing.
func (u *URLKeys) Load() error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.keys) > 0 {
		return nil
	}
	if u.path == "" {
		return errors.New("load URL keys: no key file")
	}
	data, err := os.ReadFile(u.path)
	if errors.Is(err, fs.ErrNotExist) && u.create {
		var k secretbox.Key
		if k, err = secretbox.GenerateKey(); err == nil {
			data = secretbox.FormatKeyFile(k)
			if err = secretbox.WriteFileExclusive(u.path, data); errors.Is(err, fs.ErrExist) {
				data, err = os.ReadFile(u.path)
			}
		}
	}
	if err != nil {
		return fmt.Errorf("load URL key file: %w", err)
	}
	keys, err := secretbox.Parse(data)
	if err != nil {
		return fmt.Errorf("load URL key file %s: %w", u.path, err)
	}
	u.keys = keys
	return nil
}

func (u *URLKeys) signing() (secretbox.Key, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	if len(u.keys) == 0 {
		return secretbox.Key{}, false
	}
	return u.keys[0], true
}

func (u *URLKeys) byID(id string) (secretbox.Key, bool) {
	u.mu.RLock()
	defer u.mu.RUnlock()
	for _, k := range u.keys {
		if k.ID == id {
			return k, true
		}
	}
	return secretbox.Key{}, false
}

// mac is the signature of one URL's fields.
func mac(key []byte, tenant, fileID, deviceKey string, expiry int64) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte("fleetacs-file-url-v1"))
	for _, f := range []string{tenant, fileID, deviceKey, strconv.FormatInt(expiry, 10)} {
		h.Write([]byte(strconv.Itoa(len(f))))
		h.Write([]byte{':'})
		h.Write([]byte(f))
	}
	return h.Sum(nil)
}

// Errors of signing and checking URLs.
var (
	errNoBaseURL   = errors.New("files.base-url is not set: signed URLs need the address CPEs reach /files/ at")
	errBadSig      = errors.New("download URL signature missing or invalid")
	errExpired     = errors.New("download URL expired")
	errKeysMissing = errors.New("URL keys not loaded")
)

// SignURL returns the URL at which the device deviceKey of tenant may
// download file fileID for ttl (at most files.max-url-ttl). It does not
// look the file up: a URL of a deleted or unknown file answers 404.
// Presets and campaigns put it in a Download's URL.
func (s *Service) SignURL(tenant, fileID, deviceKey string, ttl time.Duration) (string, error) {
	base := ""
	if b := s.baseURL.Load(); b != nil {
		base = *b
	}
	if base == "" {
		return "", errNoBaseURL
	}
	p, err := s.SignPath(tenant, fileID, deviceKey, ttl)
	if err != nil {
		return "", err
	}
	return base + p, nil
}

// SignFileURL is SignURL for a file whose record the caller has (from
// Resolve): the URL's path ends with the file's name, which CPEs that
// name the stored file after the URL use.
func (s *Service) SignFileURL(f *filesv1.File, deviceKey string, ttl time.Duration) (string, error) {
	u, err := s.SignURL(f.GetTenant(), f.GetId(), deviceKey, ttl)
	if err != nil {
		return "", err
	}
	if !validName(f.GetName()) {
		return u, nil
	}
	path, query, _ := strings.Cut(u, "?")
	return path + "/" + f.GetName() + "?" + query, nil
}

// SignPath is SignURL's path and query, without the base URL.
func (s *Service) SignPath(tenant, fileID, deviceKey string, ttl time.Duration) (string, error) {
	switch {
	case !apiauth.ValidTenant(tenant):
		return "", fmt.Errorf("sign URL: bad tenant %q", tenant)
	case !recordid.Valid(fileID):
		return "", fmt.Errorf("sign URL: bad file id %q", fileID)
	case deviceKey == "" || len(deviceKey) > maxDeviceKey:
		return "", fmt.Errorf("sign URL: device key must be 1 to %d bytes", maxDeviceKey)
	case ttl <= 0 || ttl > s.cfg.MaxURLTTL:
		return "", fmt.Errorf("sign URL: ttl %s must be positive and at most files.max-url-ttl (%s)", ttl, s.cfg.MaxURLTTL)
	}
	k, ok := s.keys.signing()
	if !ok {
		return "", errKeysMissing
	}
	exp := s.now().Add(ttl).Unix()
	q := url.Values{}
	q.Set("d", deviceKey)
	q.Set("e", strconv.FormatInt(exp, 10))
	q.Set("k", k.ID)
	q.Set("s", base64.RawURLEncoding.EncodeToString(mac(k.Secret, tenant, fileID, deviceKey, exp)))
	return "/files/" + tenant + "/" + fileID + "?" + q.Encode(), nil
}

// maxDeviceKey bounds a device key in a URL (the inventory's device ids
// are far shorter).
const maxDeviceKey = 256

// checkSignature verifies a URL's query for tenant and fileID and returns
// the device it was signed for.
func (s *Service) checkSignature(tenant, fileID string, q url.Values) (string, error) {
	dev, e, kid, sig := q.Get("d"), q.Get("e"), q.Get("k"), q.Get("s")
	if dev == "" || len(dev) > maxDeviceKey || e == "" || kid == "" || sig == "" || len(q) != 4 {
		return "", errBadSig
	}
	for _, k := range []string{"d", "e", "k", "s"} {
		if len(q[k]) != 1 {
			return "", errBadSig
		}
	}
	exp, err := strconv.ParseInt(e, 10, 64)
	if err != nil {
		return "", errBadSig
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(got) != sha256.Size {
		return "", errBadSig
	}
	k, ok := s.keys.byID(kid)
	if !ok {
		return "", errBadSig
	}
	if !hmac.Equal(got, mac(k.Secret, tenant, fileID, dev, exp)) {
		return "", errBadSig
	}
	if s.now().Unix() > exp {
		return "", errExpired
	}
	return dev, nil
}
