package files

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fleetacs/fleetacs/pkg/apiauth"
	filesv1 "github.com/fleetacs/fleetacs/proto/gen/fleetacs/files/v1"
	"github.com/fleetacs/fleetacs/services/files/store"
)

// ErrNoFile: Resolve found no file for the product class, type and version.
var ErrNoFile = errors.New("no file for this product class, type and version")

// Resolve returns the file a device of productClass should download for
// fileType and version: of the tenant's files with that type and version,
// the newest that names productClass, else the newest for any product
// class; ErrNoFile when there is none. Presets and campaigns call it, then
// SignURL for each device. The error wraps store.ErrUnavailable when the
// store cannot be reached.
func (s *Service) Resolve(ctx context.Context, tenant, productClass, fileType, version string) (*filesv1.File, error) {
	if !apiauth.ValidTenant(tenant) || fileType == "" {
		return nil, fmt.Errorf("resolve file: tenant and file type are required")
	}
	var generic *store.Record
	q := store.Query{Tenant: tenant, FileType: fileType, Version: version, ProductClass: productClass, Limit: 100}
	for {
		rs, err := s.meta.List(ctx, q)
		if err != nil {
			return nil, fmt.Errorf("resolve file: %w", err)
		}
		for i, r := range rs {
			if productClass != "" && slices.Contains(r.ProductClasses, productClass) {
				return toProto(r), nil
			}
			if generic == nil && len(r.ProductClasses) == 0 {
				generic = &rs[i]
				if productClass == "" {
					return toProto(*generic), nil
				}
			}
		}
		if len(rs) < q.Limit {
			break
		}
		last := rs[len(rs)-1]
		q.After = &store.Cursor{CreateTime: last.CreateTime, ID: last.ID}
	}
	if generic != nil {
		return toProto(*generic), nil
	}
	return nil, ErrNoFile
}

// Get returns one file's record: for campaigns that name a file by id.
// The error wraps store.ErrNotFound when the tenant has no such file, and
// store.ErrUnavailable when the store cannot be reached.
func (s *Service) Get(ctx context.Context, tenant, id string) (*filesv1.File, error) {
	r, err := s.meta.Get(ctx, tenant, id)
	if err != nil {
		return nil, fmt.Errorf("get file: %w", err)
	}
	return toProto(r), nil
}

// HasVersion reports whether the tenant has a file of fileType and
// version for any product class: campaigns check it when they are
// created, before resolving each device's file.
func (s *Service) HasVersion(ctx context.Context, tenant, fileType, version string) (bool, error) {
	rs, err := s.meta.List(ctx, store.Query{Tenant: tenant, FileType: fileType, Version: version, Limit: 1})
	if err != nil {
		return false, fmt.Errorf("look up files: %w", err)
	}
	return len(rs) > 0, nil
}
