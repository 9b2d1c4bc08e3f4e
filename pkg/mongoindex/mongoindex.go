// Package mongoindex creates a collection's indexes so that any number of
// processes may do it at once, and again at every start, on MongoDB and
// on FerretDB.
//
// createIndexes is idempotent on MongoDB for identical specifications,
// but two processes creating the same index at once may still be refused
// (IndexBuildAlreadyInProgress, IndexOptionsConflict while the other build
// commits), and FerretDB 1.24 drops the connection when asked for an index
// that exists or that another connection is creating (docs/design.md §7).
// Ensure therefore lists the indexes first, creates only those missing,
// and when creating fails, lists again: the indexes now there with the
// specification asked for (made by a concurrent process) are success, and
// it tries again, a bounded number of times, for those still missing.
package mongoindex

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
)

// Attempts is how many times Ensure tries to create the missing indexes
// before it gives up with the last error.
const Attempts = 6

// retryBase is the first pause between attempts; it doubles, with jitter.
var retryBase = 50 * time.Millisecond

// Spec is an index as Ensure compares it: its name, keys and uniqueness.
type Spec struct {
	Name   string
	Keys   bson.D
	Unique bool
}

// Ensure makes sure coll has the indexes of models (Keys a bson.D; a name
// is derived from the keys, as the server would, when the options give
// none). It creates only those missing by name, and fails with a clear
// error when an index of that name exists with other keys or uniqueness:
// that is a schema conflict no retry mends.
func Ensure(ctx context.Context, coll *mongo.Collection, models ...mongo.IndexModel) error {
	want := make([]Spec, 0, len(models))
	for _, m := range models {
		s, err := specOf(m)
		if err != nil {
			return fmt.Errorf("indexes of %s: %w", coll.Name(), err)
		}
		want = append(want, s)
	}
	pause := retryBase
	var lastErr error
	for attempt := 1; ; attempt++ {
		have, err := List(ctx, coll)
		if err != nil {
			// A dropped connection (FerretDB after a refused create) is
			// worth another attempt; the context bounds them.
			if attempt < Attempts && retryable(ctx, err) {
				lastErr = err
				if !sleep(ctx, &pause) {
					return fmt.Errorf("indexes of %s: %w (after %w)", coll.Name(), ctx.Err(), lastErr)
				}
				continue
			}
			return fmt.Errorf("indexes of %s: %w", coll.Name(), err)
		}
		missing, err := Missing(want, have)
		if err != nil {
			return fmt.Errorf("indexes of %s: %w", coll.Name(), err)
		}
		if len(missing) == 0 {
			return nil
		}
		if attempt > Attempts {
			return fmt.Errorf("indexes of %s: %d still missing after %d attempts: %w", coll.Name(), len(missing), Attempts, lastErr)
		}
		var create []mongo.IndexModel
		for _, s := range missing {
			o := options.Index().SetName(s.Name)
			if s.Unique {
				o.SetUnique(true)
			}
			create = append(create, mongo.IndexModel{Keys: s.Keys, Options: o})
		}
		_, err = coll.Indexes().CreateMany(ctx, create)
		if err == nil {
			return nil
		}
		if !retryable(ctx, err) {
			return fmt.Errorf("indexes of %s: create: %w", coll.Name(), err)
		}
		lastErr = err
		if !sleep(ctx, &pause) {
			return fmt.Errorf("indexes of %s: %w (after %w)", coll.Name(), ctx.Err(), lastErr)
		}
	}
}

// Server error codes of a concurrent createIndexes.
const (
	codeIndexOptionsConflict        = 85
	codeIndexKeySpecsConflict       = 86
	codeIndexAlreadyExists          = 68
	codeIndexBuildAlreadyInProgress = 276
	codeNamespaceExists             = 48
	codeWriteConflict               = 112
)

// retryable reports whether a failed listIndexes or createIndexes may be
// the mark of another process creating the same indexes: a conflict the
// server reports, or a connection FerretDB dropped. A context that ended
// never is.
func retryable(ctx context.Context, err error) bool {
	if ctx.Err() != nil {
		return false
	}
	if mongo.IsNetworkError(err) {
		return true
	}
	var ce mongo.CommandError
	if errors.As(err, &ce) {
		switch ce.Code {
		case codeIndexOptionsConflict, codeIndexKeySpecsConflict, codeIndexAlreadyExists,
			codeIndexBuildAlreadyInProgress, codeNamespaceExists, codeWriteConflict:
			return true
		}
		return ce.HasErrorLabel("TransientTransactionError")
	}
	return false
}

func sleep(ctx context.Context, pause *time.Duration) bool {
	d := *pause/2 + rand.N(*pause)
	*pause *= 2
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Missing returns the specs of want that have lacks by name, and an error
// naming every index of want that have holds under the same name with
// other keys or uniqueness.
func Missing(want, have []Spec) ([]Spec, error) {
	byName := make(map[string]Spec, len(have))
	for _, h := range have {
		byName[h.Name] = h
	}
	var missing []Spec
	var errs []error
	for _, w := range want {
		h, ok := byName[w.Name]
		if !ok {
			missing = append(missing, w)
			continue
		}
		if !sameKeys(w.Keys, h.Keys) || w.Unique != h.Unique {
			errs = append(errs, fmt.Errorf("index %s exists as %s, want %s: drop it to have it made again", w.Name, h, w))
		}
	}
	return missing, errors.Join(errs...)
}

// String is the spec as the shell would show it, for errors.
func (s Spec) String() string {
	var b strings.Builder
	b.WriteString("{")
	for i, e := range s.Keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s: %v", e.Key, e.Value)
	}
	b.WriteString("}")
	if s.Unique {
		b.WriteString(" unique")
	}
	return b.String()
}

// List returns the indexes of coll (none when the collection does not
// exist yet).
func List(ctx context.Context, coll *mongo.Collection) ([]Spec, error) {
	cur, err := coll.Indexes().List(ctx)
	if err != nil {
		var ce mongo.CommandError
		if errors.As(err, &ce) && ce.Code == 26 { // NamespaceNotFound
			return nil, nil
		}
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	defer cur.Close(ctx)
	var specs []Spec
	for cur.Next(ctx) {
		var ix struct {
			Name   string `bson:"name"`
			Key    bson.D `bson:"key"`
			Unique bool   `bson:"unique"`
		}
		if err := cur.Decode(&ix); err != nil {
			return nil, fmt.Errorf("list indexes: %w", err)
		}
		specs = append(specs, Spec{Name: ix.Name, Keys: ix.Key, Unique: ix.Unique})
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("list indexes: %w", err)
	}
	return specs, nil
}

func specOf(m mongo.IndexModel) (Spec, error) {
	keys, ok := m.Keys.(bson.D)
	if !ok || len(keys) == 0 {
		return Spec{}, fmt.Errorf("index keys %v: want a non-empty bson.D", m.Keys)
	}
	var o options.IndexOptions
	if m.Options != nil {
		for _, set := range m.Options.List() {
			if err := set(&o); err != nil {
				return Spec{}, err
			}
		}
	}
	s := Spec{Keys: keys}
	if o.Name != nil {
		s.Name = *o.Name
	} else {
		s.Name = DefaultName(keys)
	}
	if o.Unique != nil {
		s.Unique = *o.Unique
	}
	return s, nil
}

// DefaultName is the name MongoDB gives an index of keys when asked for
// none: each key and its value joined by "_".
func DefaultName(keys bson.D) string {
	parts := make([]string, 0, 2*len(keys))
	for _, e := range keys {
		parts = append(parts, e.Key, fmt.Sprint(e.Value))
	}
	return strings.Join(parts, "_")
}

// sameKeys compares key documents in order, numbers by value (a server
// may answer 1 as an int32, an int64 or a double).
func sameKeys(a, b bson.D) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Key != b[i].Key {
			return false
		}
		x, xok := number(a[i].Value)
		y, yok := number(b[i].Value)
		switch {
		case xok && yok:
			if x != y {
				return false
			}
		case xok != yok:
			return false
		default:
			if fmt.Sprint(a[i].Value) != fmt.Sprint(b[i].Value) {
				return false
			}
		}
	}
	return true
}

func number(v any) (float64, bool) {
	switch n := v.(type) {
	case int:
		return float64(n), true
	case int32:
		return float64(n), true
	case int64:
		return float64(n), true
	case float64:
		return n, true
	}
	return 0, false
}
