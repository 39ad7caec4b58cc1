package vault

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/custodyhq/custody/internal/backend"
)

// KeyInfo describes one key file, without its secret.
type KeyInfo struct {
	Name    string    `json:"name"`
	Created time.Time `json:"created"`
	Host    string    `json:"host,omitempty"`
	User    string    `json:"user,omitempty"`
	Current bool      `json:"current"`
}

// Keys lists the vault's key files, oldest first.
func (v *Vault) Keys(ctx context.Context) ([]KeyInfo, error) {
	var out []KeyInfo
	err := v.be.List(ctx, backend.Keys, func(i backend.Info) error {
		b, err := v.be.Get(ctx, i.Handle)
		if err != nil {
			return err
		}
		kf, err := decodeKeyFile(b)
		if err != nil {
			return fmt.Errorf("key %s: %w", i.Handle.Name, err)
		}
		out = append(out, KeyInfo{Name: i.Handle.Name, Created: kf.Created, Host: kf.Host, User: kf.User, Current: i.Handle.Name == v.keyName})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list keys: %w", err)
	}
	slices.SortFunc(out, func(a, b KeyInfo) int { return a.Created.Compare(b.Created) })
	return out, nil
}

// RemoveKey deletes the key named by prefix. It refuses the key in use, so
// the vault can never be left without a key someone can open.
func (v *Vault) RemoveKey(ctx context.Context, prefix string) (string, error) {
	keys, err := v.Keys(ctx)
	if err != nil {
		return "", err
	}
	var match []KeyInfo
	for _, k := range keys {
		if strings.HasPrefix(k.Name, strings.ToLower(prefix)) {
			match = append(match, k)
		}
	}
	switch {
	case prefix == "" || len(match) == 0:
		return "", fmt.Errorf("no key %q (see 'custody key list')", prefix)
	case len(match) > 1:
		return "", fmt.Errorf("key prefix %q matches %d keys; give more characters", prefix, len(match))
	case match[0].Current:
		return "", errors.New("refusing to remove the key this session opened the vault with: open with another passphrase to remove it")
	}
	if err := v.be.Delete(ctx, backend.Handle{Kind: backend.Keys, Name: match[0].Name}); err != nil {
		return "", fmt.Errorf("remove key: %w", err)
	}
	return match[0].Name, nil
}
