package sim

import (
	"embed"
	"fmt"
	"sync"

	"github.com/fleetacs/fleetacs/tools/cpesim/internal/datamodel"
)

// The data models the simulated devices implement, as tables generated from
// the Broadband Forum's data-model XML by tools/cpesim/internal/dmgen and
// committed, so the simulator reads nothing outside the repository. Each
// table carries the BBF license notice of its source (see
// datamodels/README.md). Regenerate with `make datamodels` at the
// repository root; a test fails when they are stale.
//
//go:generate go run ../internal/dmgen -out datamodels
//go:embed datamodels/*.dm.gz
var datamodelFS embed.FS

// Model, ObjectDef and ParamDef are the simulator's view of a data model
// (see package datamodel).
type (
	Model     = datamodel.Model
	ObjectDef = datamodel.ObjectDef
	ParamDef  = datamodel.ParamDef
)

// builtinModels holds each model decoded once per process: every
// Simulator, test and device shares the decoded, immutable result.
var builtinModels = struct {
	sync.Mutex
	m map[DataModel]*builtinModel
}{m: map[DataModel]*builtinModel{}}

type builtinModel struct {
	once  sync.Once
	model *Model
	err   error
}

// loadModel returns the data model dm. The result must not be modified.
func loadModel(dm DataModel) (*Model, error) {
	src, err := dm.source()
	if err != nil {
		return nil, fmt.Errorf("load data model: %w", err)
	}
	builtinModels.Lock()
	e, ok := builtinModels.m[dm]
	if !ok {
		e = &builtinModel{}
		builtinModels.m[dm] = e
	}
	builtinModels.Unlock()
	e.once.Do(func() {
		e.model, e.err = decodeBuiltin(src)
		if e.err != nil {
			e.err = fmt.Errorf("load data model %s: %w", dm, e.err)
		}
	})
	return e.model, e.err
}

func decodeBuiltin(src datamodel.Source) (*Model, error) {
	gz, err := datamodelFS.ReadFile("datamodels/" + src.Table)
	if err != nil {
		return nil, err
	}
	table, err := datamodel.Decompress(gz)
	if err != nil {
		return nil, err
	}
	return datamodel.UnmarshalTable(table)
}
