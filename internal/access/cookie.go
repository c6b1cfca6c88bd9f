package access

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// KeyFile is the file in the relay's state directory that holds the key of
// its sign-in cookies; deleting it signs every visitor out.
const KeyFile = "access-cookie.key"

const keySize = 32

// maxCookie bounds what a cookie decoder reads: a browser sends at most ~4 KiB.
const maxCookie = 4096

// Keys seals and opens Burrow's cookies: AES-256-GCM, with the host and
// prefix (and the cookie's purpose) as additional data, so a cookie of one
// route never opens for another.
type Keys struct {
	aead cipher.AEAD
}

// NewKeys makes Keys from a 32-byte key.
func NewKeys(key []byte) (*Keys, error) {
	if len(key) != keySize {
		return nil, fmt.Errorf("access: cookie key is %d bytes, want %d", len(key), keySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("access: cookie key: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("access: cookie key: %w", err)
	}
	return &Keys{aead: aead}, nil
}

// LoadKeys reads the cookie key from dir, creating it (mode 0600) on first use.
func LoadKeys(dir string) (*Keys, error) {
	p := filepath.Join(dir, KeyFile)
	key, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		key = make([]byte, keySize)
		_, _ = rand.Read(key)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("access: create state_dir for the cookie key: %w", err)
		}
		f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			return LoadKeys(dir) // another relay process wrote it first
		}
		if err != nil {
			return nil, fmt.Errorf("access: write the cookie key (check that state_dir is writable): %w", err)
		}
		if _, err := f.Write(key); err != nil {
			f.Close()
			return nil, fmt.Errorf("access: write %s: %w", p, err)
		}
		if err := f.Close(); err != nil {
			return nil, fmt.Errorf("access: write %s: %w", p, err)
		}
	} else if err != nil {
		return nil, fmt.Errorf("access: read the cookie key: %w", err)
	}
	k, err := NewKeys(key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w (delete it to make a new one)", p, err)
	}
	return k, nil
}

// seal encrypts v as JSON, bound to ad, into a cookie value.
func (k *Keys) seal(ad string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("access: encode cookie: %w", err)
	}
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(plain)+k.aead.Overhead())
	_, _ = rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(k.aead.Seal(nonce, nonce, plain, []byte(ad))), nil
}

var errBadCookie = errors.New("access: cookie does not open")

// open decrypts a cookie value sealed for ad into v.
func (k *Keys) open(ad, value string, v any) error {
	if len(value) > maxCookie {
		return errBadCookie
	}
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < k.aead.NonceSize()+k.aead.Overhead() {
		return errBadCookie
	}
	n := k.aead.NonceSize()
	plain, err := k.aead.Open(nil, raw[:n], raw[n:], []byte(ad))
	if err != nil {
		return errBadCookie
	}
	if err := json.Unmarshal(plain, v); err != nil {
		return fmt.Errorf("%w: %w", errBadCookie, err)
	}
	return nil
}
